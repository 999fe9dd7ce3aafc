#!/usr/bin/env bash
# Gathers wheels and src/mailer on the host for this image (see ../python-app-prepare.sh).
exec bash "$(dirname "${BASH_SOURCE[0]}")/../python-app-prepare.sh" "$(dirname "${BASH_SOURCE[0]}")" mailer
