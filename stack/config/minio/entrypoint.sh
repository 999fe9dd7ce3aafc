#!/bin/sh
# MinIO reads MINIO_ROOT_USER_FILE/MINIO_ROOT_PASSWORD_FILE but silently ignores a missing file
# (cmd/common-main.go) and would start with default credentials: refuse that (S6).
set -eu
for var in MINIO_ROOT_USER_FILE MINIO_ROOT_PASSWORD_FILE MINIO_KMS_SECRET_KEY_FILE; do
  eval "f=\${$var:-}"
  if [ -z "$f" ] || [ ! -s "$f" ] || [ ! -r "$f" ]; then
    echo "minio: $var points at '${f:-}', which is missing, empty or unreadable; refusing to start" >&2
    exit 1
  fi
  echo "minio: $var loaded"
done
exec minio "$@"
