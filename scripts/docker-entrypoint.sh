#!/bin/sh
# Entrypoint of the Patroli container image.
#
# With PostgreSQL (PATROLI_DATABASE_URL starting with postgresql...), before running a
# `patroli` command it waits until the database accepts connections, and before
# `patroli serve` it applies the migrations (`patroli migrate`, a no-op when the schema is
# current). With the embedded SQLite default the service migrates itself at start-up, so
# nothing happens here. Then the command replaces this shell (exec), so the server is PID 1
# and receives the container's stop signal.
#
# Environment:
#   PATROLI_DATABASE_URL      SQLAlchemy URL of the store (see `patroli --help`).
#   PATROLI_DB_WAIT_TIMEOUT   seconds to wait for PostgreSQL (default 60; 0 = don't wait).
#   PATROLI_SKIP_MIGRATE      1 = don't migrate before serving (e.g. several replicas,
#                             with migrations run once by `patroli migrate` elsewhere).
#
# Arguments starting with "-" are taken as options of `patroli serve`:
#   docker run IMAGE --port 9000   ->   patroli serve --port 9000
set -eu

say() { printf 'docker-entrypoint: %s\n' "$*" >&2; }

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    set -- patroli serve "$@"
fi

wait_for_database() {
    python - <<'PY'
import os
import sys
import time

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError

url = make_url(os.environ["PATROLI_DATABASE_URL"])
shown = url.render_as_string(hide_password=True)
timeout = float(os.environ.get("PATROLI_DB_WAIT_TIMEOUT", "60"))
engine = create_engine(url, connect_args={"connect_timeout": 5})
deadline = time.monotonic() + timeout
said = False
while True:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        break
    except (OperationalError, InterfaceError) as exc:
        if time.monotonic() >= deadline:
            reason = str(exc.orig if exc.orig is not None else exc).strip()
            print(f"docker-entrypoint: {shown} not reachable after {timeout:g} s: {reason}",
                  file=sys.stderr)
            sys.exit(1)
        if not said:
            print(f"docker-entrypoint: waiting for {shown}", file=sys.stderr)
            said = True
        time.sleep(1)
engine.dispose()
PY
}

case "${PATROLI_DATABASE_URL:-}" in
    postgresql*)
        if [ "$1" = patroli ]; then
            if [ "${PATROLI_DB_WAIT_TIMEOUT:-60}" != 0 ]; then
                wait_for_database
            fi
            if [ "${2:-}" = serve ] && [ "${PATROLI_SKIP_MIGRATE:-0}" != 1 ]; then
                say "applying migrations"
                patroli migrate
            fi
        fi
        ;;
esac

exec "$@"
