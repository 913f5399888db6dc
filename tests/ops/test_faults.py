"""Faults under load: the database stops and returns, the disk fills up or turns read-only.

Trackers keep posting (and retrying, as real ones do) throughout. Whatever happens, a ping is
acknowledged only once committed, nothing acknowledged is lost, nothing is stored twice, and
the service answers a clear 503 while it cannot store, then recovers by itself.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import _unavailable
from tests.helpers import PATROLI, cli_env, free_port, run_patroli, run_server
from tests.ops.harness import (
    ADMIN_KEY,
    PrivatePostgres,
    Trackers,
    add_trackers,
    private_postgres,
    stored_ping_ids,
    wait_ready,
)

OUTAGE_S = 6.0


def _serve_env(database_url: str) -> dict[str, str]:
    return cli_env(database_url, PATROLI_ADMIN_KEY=ADMIN_KEY)


def _check_ledger(trackers: Trackers, database_url: str) -> Counter[str]:
    """Acknowledged == stored, each once; every answer a 200 or a 503 with Retry-After."""
    stored = Counter(stored_ping_ids(database_url))
    assert [p for p, n in stored.items() if n > 1] == []  # nothing stored twice
    assert trackers.ledger.acked == set(stored)  # nothing acknowledged lost, nothing extra
    assert trackers.ledger.sent == trackers.ledger.acked  # every ping got through in the end
    statuses = Counter(a.status for a in trackers.ledger.answers)
    assert set(statuses) <= {200, 503}, statuses
    assert all(a.retry_after for a in trackers.ledger.answers if a.status == 503)
    return statuses


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    try:
        with private_postgres(free_port()) as server:
            yield server
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        _unavailable(f"cannot run a PostgreSQL server of the test's own: {detail}")


def test_database_outage_only_503_then_recovery_and_nothing_lost(
    postgres: PrivatePostgres, tmp_path: Path
) -> None:
    """PostgreSQL stops under load and returns: 503 + Retry-After meanwhile, never a 2xx
    without a commit; ready again soon after; acknowledged == stored."""
    env = _serve_env(postgres.url)
    migrated = run_patroli("migrate", env=env, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    with run_server([*PATROLI, "serve"], env, tmp_path) as (base, _):
        secrets = add_trackers(base, 5)
        with Trackers([base], secrets) as trackers:
            time.sleep(2)
            postgres.stop("fast")
            down = time.monotonic()
            time.sleep(OUTAGE_S)
            during = trackers.ledger.between(down + 1, time.monotonic())
            postgres.start()
            back = time.monotonic()
            recovered = wait_ready(base, timeout=30)
            time.sleep(2)
        assert recovered is not None and recovered < 5, recovered
        assert during and {a.status for a in during} == {503}
        ready = httpx.get(f"{base}/readyz").json()
        assert ready["status"] == "ok"
        statuses = _check_ledger(trackers, postgres.url)
        assert statuses[503] > 0
        after = trackers.ledger.between(back + recovered + 1, time.monotonic())
        assert after and all(a.status == 200 for a in after)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB file system of its own (tmpfs), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        _unavailable(f"cannot mount a small file system here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _remount(mount: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mount)], check=True)


def test_sqlite_disk_full_then_recovery(small_disk: Path, tmp_path: Path) -> None:
    """The embedded database's disk fills up under load: a clear 503, no corruption, and
    storing resumes by itself when space returns."""
    url = f"sqlite:///{small_disk / 'patroli.db'}"
    with run_server([*PATROLI, "serve"], _serve_env(url), tmp_path) as (base, output):
        secrets = add_trackers(base, 3)
        filler = small_disk / "filler"
        with Trackers([base], secrets, interval_s=0.02) as trackers:
            time.sleep(1)
            with open(filler, "wb") as out:  # whatever the database writes next will not fit
                try:
                    while True:
                        out.write(b"\0" * 65536)
                        out.flush()
                except OSError:
                    pass
            full = time.monotonic()
            time.sleep(3)
            during = trackers.ledger.between(full + 1, time.monotonic())
            filler.unlink()
            freed = time.monotonic()
            time.sleep(3)
            after = trackers.ledger.between(freed + 1, time.monotonic())
            r = httpx.get(f"{base}/readyz")
    assert during and {a.status for a in during} == {503}
    assert after and all(a.status == 200 for a in after), (
        [(round(a.at - freed, 2), a.status) for a in after if a.status != 200],
        [line for line in output if "unavailable" in line or "rror" in line][-20:],
    )
    assert r.status_code == 200
    _check_ledger(trackers, url)
    with sqlite3.connect(small_disk / "patroli.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_sqlite_on_a_read_only_file_system_says_so(small_disk: Path, tmp_path: Path) -> None:
    """Started where the database cannot be written, the service says which file and why,
    and changes nothing; writable again, it starts and the data is intact."""
    url = f"sqlite:///{small_disk / 'patroli.db'}"
    env = _serve_env(url)
    with run_server([*PATROLI, "serve"], env, tmp_path) as (base, _):
        add_trackers(base, 2)
    _remount(small_disk, "ro")
    try:
        port = str(free_port())
        done = subprocess.run(
            [*PATROLI, "serve", "--port", port], env=env, cwd=tmp_path, capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
    finally:
        _remount(small_disk, "rw")
    assert done.returncode != 0
    assert f"cannot open the database: SQLite database {small_disk / 'patroli.db'}" in done.stderr
    assert f"the file system of {small_disk} is read-only" in done.stderr
    with run_server([*PATROLI, "serve"], env, tmp_path) as (base, _):
        units = httpx.get(f"{base}/api/v1/units", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert units.status_code == 200 and len(units.json()) == 2
