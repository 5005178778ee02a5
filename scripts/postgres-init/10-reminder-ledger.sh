#!/usr/bin/env bash
# Creates the send ledger's database and role on the PostgreSQL of docker-compose.yaml.
#
# The postgres image runs /docker-entrypoint-initdb.d/* once, when its data volume is new. The script
# is idempotent, so on a volume that already existed run it by hand (it also re-applies the password):
#   docker compose exec postgres bash /docker-entrypoint-initdb.d/10-reminder-ledger.sh
# Inputs (from .env through docker-compose.yaml): LEDGER_DB_NAME, LEDGER_DB_USER, LEDGER_DB_PASSWORD;
# it connects as POSTGRES_USER to POSTGRES_DB (PGHOST/PGPORT are honoured).
set -euo pipefail

: "${LEDGER_DB_NAME:=reminder_ledger}"
: "${LEDGER_DB_USER:=reminder_ledger}"
: "${LEDGER_DB_PASSWORD:?LEDGER_DB_PASSWORD is empty: set it in .env (see .env.example)}"

# psql variables (:'name' quotes a literal, :"name" an identifier) keep the values out of the SQL text;
# format() with %I/%L does the same for the statements \gexec runs.
psql -v ON_ERROR_STOP=1 --quiet --no-psqlrc \
  --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
  -v ledger_db="$LEDGER_DB_NAME" -v ledger_user="$LEDGER_DB_USER" -v ledger_password="$LEDGER_DB_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'ledger_user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'ledger_user') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', :'ledger_user', :'ledger_password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'ledger_db', :'ledger_user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'ledger_db') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'ledger_db') \gexec
SELECT format('GRANT ALL ON DATABASE %I TO %I', :'ledger_db', :'ledger_user') \gexec
SQL
echo "send ledger database ${LEDGER_DB_NAME} (owner ${LEDGER_DB_USER}) is ready"
