#!/bin/sh
# Run by the postgres image once, when its volume is first made (/docker-entrypoint-initdb.d): the role
# the chain's processes log in as, alpr_app, with the password of the postgres_app_password secret. It
# owns nothing: `alpr db upgrade --grant alpr_app` (the compose `migrate` service, as the owner alpr)
# lets it read and write the tables' rows, never change the schema. A volume made before this script
# has no such role: run it once by hand (`docker compose exec postgres sh
# /docker-entrypoint-initdb.d/alpr-app-role.sh`), then `docker compose up` again.
set -eu
# psql reads the password itself (\set with backquotes), so it is never on a command line `ps` shows
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-alpr}" --dbname "${POSTGRES_DB:-alpr}" <<'SQL'
\set secret `cat /run/secrets/postgres_app_password`
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'alpr_app') AS missing \gset
\if :missing
CREATE ROLE alpr_app LOGIN PASSWORD
  :'secret';
\else
ALTER ROLE alpr_app PASSWORD
  :'secret';
\endif
SQL
