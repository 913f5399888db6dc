"""Soak: several `patroli serve` instances behind nginx on PostGIS, under many trackers for minutes.

    .venv/bin/python bench/soak.py                          # 500 units, 1000 pings/s, 10 min
    .venv/bin/python bench/soak.py --minutes 3 --units 200 --rate 300 --instances 2

A fresh PostGIS database on PATROLI_BENCH_PG_URL (default: the local socket), migrated, dropped
at the end; N instances (`patroli serve`, one worker each) behind nginx run with the shipped
deploy/nginx/patroli.conf; a patrol route with the KPUD circle on it (both with a revisit_s of
10 minutes), every unit assigned to the route, so geofence, route and overdue checks work; a
live-map client on /api/v1/stream and a webhook receiver (all events) connected; and U
simulated trackers (asyncio + httpx, one keep-alive connection each, all through nginx)
sending single JSON pings, paced to the aggregate target
rate, each ping retried with its ping id until acknowledged. It prints the rate achieved next
to the target, request latency, ping → live stream latency (from sending the acknowledged
request to the position arriving on the stream), each instance's RSS sampled every 10 s
(first, max, last, growth after the warm-up: the first fifth of the run, at most 60 s),
acknowledged vs stored (lost and stored twice must be 0) and events stored vs webhook
deliveries received, each delivery's signature and each unit's events arriving in order.
With --receiver-down S the receiver refuses connections for the first S seconds of the load
(a receiver outage): it prints when the last delivery came after the receiver returned.
The target is what the trackers offer; what is printed is what was done.

    .venv/bin/python bench/soak.py --minutes 12 --rate 300 --receiver-down 600
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import print_table  # type: ignore[import-not-found]  # noqa: E402

from tests.ops.cluster import find_nginx, fresh_database, soak, soak_table  # noqa: E402

PG_ADMIN_URL = os.environ.get(
    "PATROLI_BENCH_PG_URL", "postgresql+psycopg:///postgres?host=/var/run/postgresql"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=500, help="simulated trackers")
    parser.add_argument("--rate", type=float, default=1000.0, help="target pings/s in all")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load")
    parser.add_argument("--instances", type=int, default=2, help="patroli serve processes")
    parser.add_argument(
        "--receiver-down",
        type=float,
        default=0.0,
        help="s the webhook receiver refuses connections from the start of the load (then the "
        "run waits until every event is delivered, up to twice that plus 2 min: the backoff)",
    )
    args = parser.parse_args()
    nginx = find_nginx()
    if nginx is None:
        print("nginx is not installed (scripts/install-system-deps.sh installs it)")
        return 2
    with (
        fresh_database(PG_ADMIN_URL) as url,
        tempfile.TemporaryDirectory(prefix="patroli-soak-") as tmp,
    ):
        result = soak(
            url,
            Path(tmp),
            nginx,
            units=args.units,
            rate=args.rate,
            seconds=args.minutes * 60,
            instances=args.instances,
            receiver_down_s=args.receiver_down,
            settle_s=60.0 + 2 * args.receiver_down + (60.0 if args.receiver_down else 0.0),
            say=lambda line: print(line, file=sys.stderr),
        )
    print_table(("measure", "value"), soak_table(result))
    bad = result.lost or result.twice or result.sse_missing
    bad = bad or set(result.events) != set(result.deliveries)
    bad = bad or result.unsigned or result.out_of_order or max(result.delivery_ids.values()) > 1
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
