#!/usr/bin/env bash
# Start a dedicated, throw-away PostgreSQL cluster for the test suite and print its URL.
#
# Runs as root on Debian with the `postgresql` package installed. Idempotent: the
# cluster "flowtest" is created once and started if it is not already running.
# Trust authentication on 127.0.0.1 only: this cluster holds nothing but test data.
set -euo pipefail

CLUSTER=flowtest
PORT="${JUPYTER_FLOW_PG_PORT:-54329}"

if [ ! -d /usr/lib/postgresql ]; then
    echo "start-postgres: /usr/lib/postgresql not found; install Debian's postgresql package" >&2
    exit 2
fi
# Newest installed major version.
VER="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
if [ -z "$VER" ] || [ ! -x "/usr/lib/postgresql/$VER/bin/postgres" ]; then
    echo "start-postgres: no PostgreSQL server binaries under /usr/lib/postgresql" >&2
    exit 2
fi

if ! pg_lsclusters -h | awk -v v="$VER" -v c="$CLUSTER" '$1 == v && $2 == c {found=1} END {exit !found}'; then
    pg_createcluster "$VER" "$CLUSTER" -p "$PORT" -- --auth-local=trust --auth-host=trust >/dev/null
    # Test databases need speed, not durability.
    conf="/etc/postgresql/$VER/$CLUSTER/conf.d"
    mkdir -p "$conf"
    cat >"$conf/flowtest.conf" <<CONF
listen_addresses = '127.0.0.1'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
CONF
fi

status="$(pg_lsclusters -h | awk -v v="$VER" -v c="$CLUSTER" '$1 == v && $2 == c {print $4}')"
if [ "$status" != "online" ]; then
    pg_ctlcluster "$VER" "$CLUSTER" start
fi

# Wait until it accepts connections (pg_ctlcluster returns once the postmaster is up).
for _ in $(seq 1 50); do
    if pg_isready -q -h 127.0.0.1 -p "$PORT"; then
        break
    fi
    sleep 0.1
done
pg_isready -q -h 127.0.0.1 -p "$PORT"

echo "postgresql+psycopg://postgres@127.0.0.1:${PORT}/postgres"
