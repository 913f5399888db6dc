"""A short soak: two instances behind nginx on PostGIS, events on, a live-map client and a
webhook receiver connected (down for the first 20 s), many trackers posting single pings
(bench/soak.py is the long form).

Without nginx the test is skipped locally and fails under CI, like tests/test_cluster.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.conftest import _truncate
from tests.ops.cluster import nginx_binary, soak, soak_table


def test_a_minute_of_load_loses_nothing_and_delivers_everything_once(
    postgis_url: str, tmp_path: Path
) -> None:
    nginx = nginx_binary()
    _truncate(postgis_url)
    result = soak(
        postgis_url,
        tmp_path,
        nginx,
        units=30,
        rate=60,
        seconds=50,
        sample_s=5,
        settle_s=90,
        receiver_down_s=20,  # the webhook receiver refuses connections for the first 20 s
    )
    for name, value in soak_table(result):
        print(f"{name:<40} {value}", file=sys.stderr)
    acked = result.acked
    assert len(acked) > 1000, "the trackers got pings acknowledged"
    assert not result.load.refused, result.load.refused[:5]
    assert result.lost == 0, "acknowledged pings are missing"
    assert result.twice == 0, "a ping stored twice"
    assert set(result.stored) == result.load.ledger.sent, "only pings sent are stored"
    assert not result.sse_missing, f"not on the stream: {result.sse_missing[:5]}"
    assert len(result.sse_latencies) == len(acked)
    assert result.events, "the route and the circle fired events"
    assert sorted(result.deliveries) == result.events, "every event delivered"
    assert set(result.deliveries.values()) == {1}, "no event delivered twice"
    assert set(result.delivery_ids.values()) == {1}, "no delivery sent twice"
    assert not result.unsigned, "every delivery signed with the webhook's secret"
    assert not result.out_of_order, "each unit's events delivered in the order they happened"
    assert result.drained_s < 90, "the backlog delivered soon after the receiver came back"
    assert all(len(samples) >= 5 for samples in result.rss.values()), "RSS sampled every 5 s"
