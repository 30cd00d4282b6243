#!/usr/bin/env bash
# Make sure the PostgreSQL server binaries the test suite starts (tests/pgserver.py) exist,
# and that a `postgres` user exists to run them as when the suite runs as root.
# Quick no-op when all is in place.
set -euo pipefail

have_binaries() {
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

if ! have_binaries; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "ensure-postgres: PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb)." >&2
        echo "ensure-postgres: run this script as root, or install them: sudo apt-get install -y postgresql" >&2
        exit 1
    fi
    echo "ensure-postgres: installing PostgreSQL (apt-get)..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y postgresql
    if ! have_binaries; then
        echo "ensure-postgres: apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb appeared" >&2
        exit 1
    fi
fi

# As root the suite runs initdb/pg_ctl as `postgres` (they refuse to run as root).
if [ "$(id -u)" -eq 0 ] && ! id -u postgres >/dev/null 2>&1; then
    echo "ensure-postgres: creating the 'postgres' system user"
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin postgres
fi
