#!/usr/bin/env bash
# Entrypoint of the offline postgres stand-in: first start initialises PGDATA from the official
# image's variables and init scripts, every start then execs postgres as PID 1.
#
# As the official image (18.x) does: POSTGRES_PASSWORD read from POSTGRES_PASSWORD_FILE is
# exported and left in the server's environment, so the stack's wrapper
# (stack/config/postgres/entrypoint.sh) is what keeps it out, online and offline alike. Called as
# docker-ensure-initdb.sh (a link to this file, as in the official image), it initialises PGDATA
# if it is empty and exits 0 without starting the server.
set -Eeuo pipefail

die() { echo "postgres-entrypoint: $*" >&2; exit 1; }

# VAR or VAR_FILE, never both (the official image's rule); the value never reaches the log.
file_env() {
  local var="$1" fileVar="${1}_FILE" def="${2:-}"
  if [[ -n "${!var:-}" && -n "${!fileVar:-}" ]]; then
    die "both $var and $fileVar are set; set only one"
  fi
  local val="$def"
  if [[ -n "${!var:-}" ]]; then
    val="${!var}"
  elif [[ -n "${!fileVar:-}" ]]; then
    [[ -r "${!fileVar}" ]] || die "$fileVar points at ${!fileVar}, which is missing or unreadable"
    val="$(<"${!fileVar}")"
    echo "postgres-entrypoint: loaded $var from $fileVar"
  fi
  export "$var"="$val"
  unset "$fileVar"
}

ensure_only=0
if [[ "$(basename "$0")" == docker-ensure-initdb.sh ]]; then
  ensure_only=1
  [[ "${1:-}" == postgres ]] || set -- postgres "$@"
fi

if [[ "${1:-}" == -* ]]; then
  set -- postgres "$@"
fi

if [[ "${1:-}" != postgres ]]; then
  exec "$@"
fi

if [[ "$(id -u)" == 0 ]]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi

file_env POSTGRES_PASSWORD
file_env POSTGRES_USER postgres
file_env POSTGRES_DB "$POSTGRES_USER"
file_env POSTGRES_INITDB_ARGS

mkdir -p "$PGDATA"
chmod 700 "$PGDATA" 2>/dev/null || true

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
  if [[ -z "$POSTGRES_PASSWORD" && "${POSTGRES_HOST_AUTH_METHOD:-}" != trust ]]; then
    die "database is uninitialized and no superuser password is set: set POSTGRES_PASSWORD_FILE (or POSTGRES_PASSWORD)"
  fi
  echo "postgres-entrypoint: initialising $PGDATA"
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a word list by contract
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 $POSTGRES_INITDB_ARGS >/dev/null
  printf 'host all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >>"$PGDATA/pg_hba.conf"
  # as the official image: listen on every address of the container (initdb says localhost)
  printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

  # A socket-only server for the init phase: nothing outside can connect before init is done,
  # so a TCP health check reports healthy only for the final server.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start >/dev/null
  export PGUSER="$POSTGRES_USER" PGPASSWORD="$POSTGRES_PASSWORD"
  psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" -p 5432)
  if [[ "$POSTGRES_DB" != postgres ]]; then
    "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";' >/dev/null
  fi
  psql+=(--dbname "$POSTGRES_DB")
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) echo "postgres-entrypoint: running $f"; if [[ -x "$f" ]]; then "$f"; else . "$f"; fi ;;
      *.sql) echo "postgres-entrypoint: running $f"; "${psql[@]}" -f "$f" >/dev/null ;;
      *.sql.gz) echo "postgres-entrypoint: running $f"; gunzip -c "$f" | "${psql[@]}" >/dev/null ;;
      *) [[ -e "$f" ]] && echo "postgres-entrypoint: ignoring $f" ;;
    esac
  done
  unset PGPASSWORD
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "postgres-entrypoint: init complete; ready for start up"
elif ((ensure_only)); then
  echo "docker-ensure-initdb.sh: note: database already initialized in '$PGDATA'!" >&2
fi

((ensure_only)) && exit 0
exec "$@"
