#!/bin/sh
# The secrets of `docker compose up`, made once before the first start: a random 32-character password
# (A-Z a-z 0-9, from /dev/urandom) in each of redis_password, postgres_password, postgres_app_password,
# postgres_pruner_password, grafana_admin_password and job_key (the key every role signs its jobs
# with), in the folder given as argument, else $ALPR_SECRETS_DIR, else secrets/ at the root of this repository (git-ignored). A file that exists is never overwritten: running it again only
# adds what is missing. To change a password, edit its file (Postgres and Grafana keep the password
# they were first started with: change it in them too).
#
# The folder is made 0700 (no other user of this host can reach the files) and the files 0644:
# compose bind-mounts a secret file with its host owner and mode, and the containers read them as
# non-root users (alpr, grafana) whose ids are not the owner's.
set -eu

dir=${1:-${ALPR_SECRETS_DIR:-$(cd "$(dirname "$0")/.." && pwd)/secrets}}
umask 077
mkdir -p "$dir"
chmod 700 "$dir"

for name in redis_password postgres_password postgres_app_password postgres_pruner_password grafana_admin_password job_key; do
    file=$dir/$name
    if [ -e "$file" ]; then
        echo "kept $file"
        continue
    fi
    password=$(head -c 48 /dev/urandom | base64 | tr -d '/+=\n' | head -c 32)
    if [ ${#password} -ne 32 ]; then
        echo "make-secrets.sh: could not draw a password from /dev/urandom" >&2
        exit 1
    fi
    # noclobber: the file is created only if it does not exist yet (O_EXCL), even in a race
    if ! (set -C && printf '%s\n' "$password" >"$file") 2>/dev/null; then
        echo "kept $file"
        continue
    fi
    chmod 644 "$file"
    echo "made $file"
done
# The folder compose shows the alert pool at /run/secrets/alerts/ (ALPR_ALERT_SECRETS_DIR's default):
# made here, by this user, so that Docker does not make it owned by root; put the receivers' secret
# files in it (0644, as above).
if [ ! -d "$dir/alerts" ]; then
    mkdir "$dir/alerts"
    chmod 755 "$dir/alerts"
    echo "made $dir/alerts/ (for the alert receivers' secret files)"
fi
