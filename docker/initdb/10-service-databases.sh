#!/usr/bin/env bash
# Run once by the postgres image, on an empty data volume (docker-entrypoint-initdb.d):
# one login role and one database per service, the database owned by its role, and
# CONNECT revoked from PUBLIC so that one service's role cannot open another's database.
# Passwords come from <SERVICE>_DB_PASSWORD (docker/compose.yaml passes them; the
# defaults, the service's name, are for local development only).
# Changing a password here later needs a new volume: invoke docker.down --volumes.
set -euo pipefail

create_service_database() {
  local service=$1
  local password_var
  password_var="$(printf '%s' "$service" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
  local password=${!password_var:-$service}
  psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" \
    --dbname "${POSTGRES_DB:-postgres}" \
    --set=service="$service" --set=password="$password" <<'SQL'
CREATE ROLE :"service" LOGIN PASSWORD :'password';
CREATE DATABASE :"service" OWNER :"service";
REVOKE CONNECT, TEMPORARY ON DATABASE :"service" FROM PUBLIC;
SQL
  echo "created role and database $service"
}

create_service_database api_gateway
create_service_database signal_ingestion
create_service_database scoring_engine
create_service_database marketplace_publisher
