#!/bin/sh
# Run a command with a throwaway PostgreSQL: initdb into a temporary directory, listen on a
# Unix socket there only, run "$@" with KINESD_PG_URL naming it, then stop and remove it.
#   tools/with-postgres.sh make unit
# PostgreSQL refuses to run as root, so as root the cluster belongs to the postgres user.
set -u
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "with-postgres: PostgreSQL server not installed (Debian: postgresql)" >&2
    exit 1
fi
dir=$(mktemp -d /tmp/kinesd-pg-XXXXXX)
as=""
if [ "$(id -u)" = 0 ]; then
    chown postgres "$dir"
    as="runuser -u postgres --"
fi
cleanup() {
    $as "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM
if ! $as "$bin/initdb" -D "$dir/data" -A trust -U kinesd -E UTF8 >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    exit 1
fi
# fsync stays on: the tests check what a commit promises
if ! $as "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-k $dir -c listen_addresses='' -c max_connections=200" start >/dev/null; then
    cat "$dir/server.log" >&2
    exit 1
fi
export KINESD_PG_URL="postgresql://kinesd@/postgres?host=$dir"
export KINESD_PG_DIR="$dir"
export KINESD_PG_BIN="$bin"
"$@"
