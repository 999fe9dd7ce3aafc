#!/bin/sh
# One-shot job: the attachment archive bucket with 90-day expiry and server-side encryption (A6).
# Idempotent: every step accepts an existing bucket and rule.
set -eu
export MC_CONFIG_DIR=/tmp/.mc
mc alias set archive http://minio:9000 "$(cat /run/secrets/minio_root_user)" \
  "$(cat /run/secrets/minio_root_password)" >/dev/null
mc mb --ignore-existing archive/email-attachments
if ! mc ilm rule ls archive/email-attachments 2>/dev/null | grep -q '90'; then
  mc ilm rule add --expire-days 90 archive/email-attachments
fi
mc encrypt set sse-s3 archive/email-attachments
mc encrypt info archive/email-attachments
echo "minio-init: bucket email-attachments ready (90-day expiry, SSE-S3)"
