"""Storing what tracker protocols send: positions via group commit, other messages as reports."""

from __future__ import annotations

from collections.abc import Sequence

from service.auth import Principal
from service.ingest.pipeline import refusal
from service.ingest.writer import GroupCommitter, Outcome
from service.metrics import count_pings
from service.protocols import DeviceReport, Parsed
from service.schemas import PingIn


async def store_parsed(
    writer: GroupCommitter, principal: Principal, parsed: Sequence[Parsed], source: str
) -> Outcome:
    """Store parsed tracker messages; raises the error a tracker should see if any was refused."""
    pings = [(i, p) for i, p in enumerate(parsed) if isinstance(p, PingIn)]
    reports = [p for p in parsed if isinstance(p, DeviceReport)]
    outcome = await writer.store(principal, pings, reports=reports, source=source)
    count_pings([r.status for r in outcome.pings])
    reasons = [r.reason or "" for r in outcome.pings if r.status == "rejected"]
    reasons += [reason for reason in outcome.reports if reason]
    if reasons:
        raise refusal(reasons[0], not_found_hint=": register the unit first")
    return outcome
