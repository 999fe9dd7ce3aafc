#!/bin/sh
# As the official haproxy image's entrypoint: options alone mean haproxy; haproxy gets -W -db
# (master-worker, foreground).
set -e
if [ "${1#-}" != "$1" ]; then
  set -- haproxy "$@"
fi
if [ "$1" = haproxy ]; then
  shift
  set -- haproxy -W -db "$@"
fi
exec "$@"
