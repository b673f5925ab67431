#!/bin/sh
# Runs once, when the PostgreSQL data volume is new: Keycloak's own database and login role.
# (The platform's schemas and roles are created by the `migrate` job on every start.)
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set=keycloak_password="$KEYCLOAK_DB_PASSWORD" <<'SQL'
CREATE ROLE keycloak LOGIN PASSWORD :'keycloak_password';
CREATE DATABASE keycloak OWNER keycloak;
SQL
