#!/bin/sh
# The secrets of `docker compose up`, made once before the first start: a random 32-character password
# (A-Z a-z 0-9, from /dev/urandom) in each of redis_password, postgres_password, postgres_app_password,
# postgres_pruner_password, grafana_admin_password and job_key (the key every role signs its jobs
# with), in the folder given as argument, else $ALPR_SECRETS_DIR (an absolute path), else secrets/ at the root of this repository (git-ignored). A file that exists is never overwritten: running it again only
# adds what is missing. To change a password, edit its file (Postgres and Grafana keep the password
# they were first started with: change it in them too).
#
# The folder is made 0700 (no other user of this host can reach the files) and the files 0644:
# compose bind-mounts a secret file with its host owner and mode, and the containers read them as
# non-root users (alpr, grafana) whose ids are not the owner's.
set -eu

umask 077
fail() {
    echo "make-secrets.sh: $*" >&2
    exit 1
}
# a relative ALPR_SECRETS_DIR is two folders: docker compose reads it from the project folder (beside
# docker-compose.yml), this script would from the current one, and the stack found no secret made
if [ $# -eq 0 ] && [ -n "${ALPR_SECRETS_DIR:-}" ]; then
    case $ALPR_SECRETS_DIR in
        /*) ;;
        *) fail "ALPR_SECRETS_DIR=$ALPR_SECRETS_DIR is a relative path, which docker compose takes from the project" \
            "folder and this script would from the current one: give an absolute path" ;;
    esac
fi
dir=${1:-${ALPR_SECRETS_DIR:-$(cd "$(dirname "$0")/.." && pwd)/secrets}}
# a folder or file another user made (first, in /tmp or a shared checkout) is theirs to read and to
# plant passwords in whatever its mode: refused, never trusted, never chmod-ed as ours (test -O: ours)
mkdir -p "$dir"
if [ ! -O "$dir" ]; then fail "$dir is another user's folder: name a folder of your own"; fi
chmod 700 "$dir"

for name in redis_password postgres_password postgres_app_password postgres_pruner_password grafana_admin_password job_key; do
    file=$dir/$name
    if [ -L "$file" ] || { [ -e "$file" ] && [ ! -f "$file" ]; }; then
        fail "$file is not a regular file: remove it and run again"
    fi
    if [ -e "$file" ]; then
        if [ ! -O "$file" ]; then fail "$file is another user's file: remove it and run again"; fi
        if [ ! -s "$file" ]; then fail "$file is empty (a write that failed?): remove it and run again"; fi
        chmod 644 "$file"  # a run killed between its write and its chmod left it 0600: the containers could not read it
        echo "kept $file"
        continue
    fi
    password=$(head -c 48 /dev/urandom | base64 | tr -d '/+=\n' | head -c 32)
    if [ ${#password} -ne 32 ]; then
        fail "could not draw a password from /dev/urandom"
    fi
    # written whole beside it, then linked to its name: the name appears only with its whole content
    # (a full disk left empty files, kept for good), and only if it does not exist yet (link(2), even in a race)
    partial=$(mktemp "$dir/.$name.XXXXXX")
    if ! printf '%s\n' "$password" >"$partial" || ! chmod 644 "$partial"; then
        rm -f "$partial"
        fail "could not write $file (a full disk?)"
    fi
    if ln "$partial" "$file" 2>/dev/null; then
        echo "made $file"
    elif [ -e "$file" ]; then
        echo "kept $file"  # another run made it meanwhile
    else
        rm -f "$partial"
        fail "could not make $file (a file system without hard links?)"
    fi
    rm -f "$partial"
done
# The folder compose shows the alert pool at /run/secrets/alerts/ (ALPR_ALERT_SECRETS_DIR's default):
# made here, by this user, so that Docker does not make it owned by root; put the receivers' secret
# files in it (0644, as above).
if [ ! -d "$dir/alerts" ]; then
    mkdir "$dir/alerts"
    chmod 755 "$dir/alerts"
    echo "made $dir/alerts/ (for the alert receivers' secret files)"
fi
