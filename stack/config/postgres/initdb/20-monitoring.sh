#!/usr/bin/env bash
# The role postgres-exporter uses: member of pg_monitor (statistics views, settings, database
# sizes), no access to table data. Idempotent; re-running it after a password change rotates it.
set -euo pipefail
secret=/run/secrets/monitoring_db_password
[[ -r "$secret" ]] || { echo "initdb: missing secret $secret for role monitoring" >&2; exit 1; }
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  --set pw="$(<"$secret")" >/dev/null <<'SQL'
SET client_min_messages = warning;
SELECT 'CREATE ROLE monitoring' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'monitoring')
\gexec
ALTER ROLE monitoring WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE CONNECTION LIMIT 3 PASSWORD :'pw';
GRANT pg_monitor TO monitoring;
SQL
echo "initdb: role monitoring (pg_monitor) ready (password loaded from $secret)"
