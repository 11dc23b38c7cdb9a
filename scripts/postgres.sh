#!/usr/bin/env bash
# A local PostgreSQL server for Optuna's shared storage, used by the tests and by
#   tacotune bench compare optuna.storage=postgresql+psycopg2:///tacotune
# It listens on localhost only, and the database belongs to a role named after the user running this
# script, who connects over the Unix socket with peer authentication: no password anywhere.
# Idempotent. Needs root (apt-get, and the postgres system user); prints the URL.
set -euo pipefail
URL=postgresql+psycopg2:///tacotune
if [ "$(id -u)" != 0 ]; then
  echo "scripts/postgres.sh needs root; without it the PostgreSQL tests skip" >&2
  exit 0
fi
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
pg_lsclusters -h | grep -q "^$version main" || pg_createcluster "$version" main >/dev/null
# Debian's cluster listens on localhost only (listen_addresses default).
pg_lsclusters -h | grep -q "^$version main .* online" || pg_ctlcluster "$version" main start
as_postgres() { su postgres -c "$1"; }
user=$(id -un)
as_postgres "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname='$user'\"" | grep -q 1 \
  || as_postgres "createuser $user"
as_postgres "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='tacotune'\"" | grep -q 1 \
  || as_postgres "createdb -O $user tacotune"
as_postgres "psql -qc \"ALTER DATABASE tacotune OWNER TO $user\""  # its public schema follows the owner
echo "$URL"
