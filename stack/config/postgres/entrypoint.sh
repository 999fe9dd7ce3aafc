#!/usr/bin/env bash
# postgres' entrypoint in this stack (S1): the image's own initialisation, then the server with no
# secret in its environment.
#
# The official docker-entrypoint.sh (postgres 18.x) reads POSTGRES_PASSWORD_FILE with file_env,
# which *exports* POSTGRES_PASSWORD, and ends in `exec postgres`: the password stays in PID 1's
# environment for the life of the server (/proc/1/environ, any process of uid 999). The image
# also ships docker-ensure-initdb.sh, which sources docker-entrypoint.sh and runs the same steps
# as its _main (docker_setup_env, docker_init_database_dir, pg_setup_hba_conf, the temporary
# server, docker_setup_db, docker_process_init_files) and exits: 0 as well when PGDATA is already
# initialised. Run as a child process, the password it exports dies with it; the server is
# exec'd from here, where only POSTGRES_PASSWORD_FILE (a path) was ever set.
set -Eeuo pipefail

if [[ "${1:-}" == -* ]]; then
  set -- postgres "$@"
fi
if [[ "${1:-}" == postgres ]]; then
  docker-ensure-initdb.sh "$@"
fi
# never set here (the compose file gives only the _FILE variant); unset all the same
unset POSTGRES_PASSWORD PGPASSWORD
exec "$@"
