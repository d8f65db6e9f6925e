#!/bin/sh
# Run by the postgres image once, when its volume is first made (/docker-entrypoint-initdb.d): the login
# roles of the chain, each with the password of its secret. alpr_app (postgres_app_password), which every
# process but two logs in as, and alpr_pruner (postgres_pruner_password), the `prune` service's. Neither
# owns anything: `alpr db upgrade --grant alpr_app --grant-pruner alpr_pruner` (the compose `migrate`
# service, as the owner alpr) lets alpr_app read and write the tables' rows and alpr_pruner read what a
# prune reads and delete plate data past its retention, neither change the schema. Run again, it makes
# the roles missing and sets the others' passwords to their secrets': a volume made before this script,
# or before a role was added to it, has not all of them, so run it once by hand (`docker compose exec
# postgres sh /docker-entrypoint-initdb.d/alpr-app-role.sh`, after deploy/make-secrets.sh), then
# `docker compose up` again.
set -eu

login_role() {  # $1: the role's name, $2: the file of its password
    if [ ! -s "$2" ]; then
        echo "postgres-app-role.sh: no password for $1 in $2: run deploy/make-secrets.sh" >&2
        exit 1
    fi
    # a file saved with a byte-order mark (an editor's UTF-8 "with BOM"): the chain leaves the mark out, as
    # it reads every secret file, and Postgres would keep it: no login
    if [ "$(head -c 3 "$2" | od -An -tx1 | tr -d ' \n')" = "efbbbf" ]; then
        echo "postgres-app-role.sh: $2 starts with a byte-order mark: save it without (plain ASCII)" >&2
        exit 1
    fi
    # a file of two lines: the chain reads both (but the line ends at the end), this script would join them
    if [ "$(printf '%s' "$(tr -d '\r' < "$2")" | wc -l)" -ne 0 ]; then
        echo "postgres-app-role.sh: $2 holds more than one line: write the password alone, on one line" >&2
        exit 1
    fi
    # psql reads the password itself (\set with backquotes), so it is never on a command line `ps` shows;
    # without its line ends, as the chain reads its secret files (a file saved with CRLF gave Postgres the
    # password and a carriage return, and the chain the password alone: no login)
    psql -v ON_ERROR_STOP=1 -v role="$1" -v secret_file="$2" \
        --username "${POSTGRES_USER:-alpr}" --dbname "${POSTGRES_DB:-alpr}" <<'SQL'
\set secret `tr -d '\r\n' < :'secret_file'`
-- a statement that fails is logged whole, its password too (`docker compose logs postgres`): not these
SET log_min_error_statement = panic;
SET log_statement = 'none';
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') AS missing \gset
\if :missing
CREATE ROLE :"role" LOGIN PASSWORD
  :'secret';
\else
ALTER ROLE :"role" PASSWORD
  :'secret';
\endif
SQL
}

login_role alpr_app /run/secrets/postgres_app_password
login_role alpr_pruner /run/secrets/postgres_pruner_password
