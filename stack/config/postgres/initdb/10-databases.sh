#!/usr/bin/env bash
# Creates one database and one owning role per application (praxis, ecom, n8n), each role with
# its own password read from its secret file. Runs once, on an empty data directory.
set -euo pipefail
for app in praxis ecom n8n; do
  secret="/run/secrets/${app}_db_password"
  [[ -r "$secret" ]] || { echo "initdb: missing secret $secret for role $app" >&2; exit 1; }
  psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres \
    --set app="$app" --set pw="$(<"$secret")" >/dev/null <<'SQL'
CREATE ROLE :"app" LOGIN PASSWORD :'pw';
CREATE DATABASE :"app" OWNER :"app";
REVOKE ALL ON DATABASE :"app" FROM PUBLIC;
SQL
  echo "initdb: database and role $app created (password loaded from $secret)"
done
