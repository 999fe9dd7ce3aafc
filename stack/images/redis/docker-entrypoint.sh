#!/bin/sh
# Entrypoint of the offline redis stand-in: `redis-server` is implied when the first argument is
# a flag or a config file, as in the official image.
set -e
case "${1:-}" in
  -* | *.conf) set -- redis-server "$@" ;;
esac
exec "$@"
