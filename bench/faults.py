"""Faults under load, long form: PostgreSQL stopped for a while under many trackers, and an
instance killed with SIGKILL mid-load; prints what the trackers were answered and what is stored.

    .venv/bin/python bench/faults.py                       # 50 trackers, 30 s outage
    .venv/bin/python bench/faults.py --trackers 200 --outage 60

Each tracker posts a ping every --interval seconds and retries it (same ping id) until it is
acknowledged, as Traccar Client and OwnTracks do. The database is a PostgreSQL + PostGIS server
of the run's own (initdb in a temporary folder; root runs it as `postgres`), so the machine's
server is never stopped. Lost = acknowledged but not stored; twice = stored more than once.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import print_table  # type: ignore[import-not-found]  # noqa: E402

from tests.helpers import PATROLI, cli_env, free_port  # noqa: E402
from tests.ops.harness import (  # noqa: E402
    ADMIN_KEY,
    PrivatePostgres,
    Trackers,
    add_trackers,
    private_postgres,
    stored_ping_ids,
    wait_ready,
)


def _start(env: dict[str, str], cwd: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [*PATROLI, "serve", "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if wait_ready(f"http://127.0.0.1:{port}", 60) is None:
        proc.kill()
        raise SystemExit("patroli serve did not become ready")
    return proc


def _row(name: str, trackers: Trackers, url: str, extra: str) -> tuple[str, ...]:
    statuses = Counter(a.status for a in trackers.ledger.answers)
    stored = Counter(stored_ping_ids(url))
    acked = trackers.ledger.acked
    lost = len(acked - set(stored))
    twice = sum(1 for n in stored.values() if n > 1)
    other = sum(n for s, n in statuses.items() if s not in (200, 503))  # 0: refused, reset
    return (
        name,
        f"{sum(statuses.values()):,}",
        f"{statuses[200]:,}",
        f"{statuses[503]:,}",
        f"{other:,}",
        f"{len(acked):,}",
        f"{len(stored):,}",
        str(lost),
        str(twice),
        extra,
    )


@dataclass
class Run:
    """One fault run: its own PostgreSQL, a Patroli instance on it, trackers posting to it."""

    pg: PrivatePostgres
    env: dict[str, str]
    work: Path
    port: int
    proc: subprocess.Popen[bytes]
    trackers: Trackers

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restart(self) -> None:
        """Start the instance again on the same port (after it was killed)."""
        self.proc = _start(self.env, self.work, self.port)

    def finish(self, warmup_s: float) -> None:
        """Keep the load on for warmup_s more, then stop the trackers (each gets its last
        ping acknowledged)."""
        time.sleep(warmup_s)
        self.trackers.stop()


@contextmanager
def loaded(args: argparse.Namespace, work: Path) -> Iterator[Run]:
    """A migrated database of its own, an instance and args.trackers trackers running."""
    with private_postgres(free_port()) as pg:
        env = cli_env(pg.url, PATROLI_ADMIN_KEY=ADMIN_KEY)
        subprocess.run([*PATROLI, "migrate"], env=env, cwd=work, check=True, capture_output=True)
        port = free_port()
        run = Run(pg, env, work, port, _start(env, work, port), Trackers([], {}))
        try:
            secrets = add_trackers(run.base, args.trackers)
            run.trackers = Trackers([run.base], secrets, interval_s=args.interval)
            with run.trackers:
                time.sleep(args.warmup)
                yield run
        finally:
            run.proc.terminate()
            run.proc.wait(30)


def outage(args: argparse.Namespace, work: Path) -> tuple[str, ...]:
    """PostgreSQL stopped for args.outage seconds under load, then started again."""
    with loaded(args, work) as run:
        run.pg.stop("fast")
        time.sleep(args.outage)
        run.pg.start()
        recovered = wait_ready(run.base, 120)
        run.finish(args.warmup)
        answers = run.trackers.ledger.answers
        unexpected = Counter(a.status for a in answers if a.status not in (200, 503))
        if unexpected:
            print(f"unexpected answers: {unexpected}", file=sys.stderr)
        ready = "never" if recovered is None else f"ready {recovered:.1f} s after"
        return _row(f"PostgreSQL down {args.outage:g} s", run.trackers, run.pg.url, ready)


def sigkill(args: argparse.Namespace, work: Path) -> tuple[str, ...]:
    """The instance killed with SIGKILL under load, restarted at once on the same port."""
    with loaded(args, work) as run:
        run.proc.send_signal(signal.SIGKILL)
        run.proc.wait()
        killed = time.monotonic()
        run.restart()
        back = time.monotonic() - killed
        run.finish(args.warmup)
        return _row("instance SIGKILLed", run.trackers, run.pg.url, f"serving {back:.1f} s after")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trackers", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.1, help="s between a tracker's pings")
    parser.add_argument("--outage", type=float, default=30.0, help="s the database is down")
    parser.add_argument("--warmup", type=float, default=10.0, help="s of load before and after")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="patroli-faults-") as tmp:
        for run in (outage, sigkill):
            print(f"running {run.__name__} ...", file=sys.stderr)
            rows.append(run(args, Path(tmp)))
    header = (
        "fault",
        "answers",
        "200",
        "503",
        "no answer",
        "acked",
        "stored",
        "lost",
        "twice",
        "recovery",
    )
    print_table(header, rows)
    return 0 if all(r[7] == "0" and r[8] == "0" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
