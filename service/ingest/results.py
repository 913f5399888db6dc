"""The answer of every ingest door: a stored batch as the HTTP response, counted in the metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from service.auth import Principal
from service.errors import InvalidInput, PatroliError
from service.ingest.pipeline import refusal
from service.ingest.writer import GroupCommitter, Outcome
from service.metrics import count_pings
from service.protocols import DeviceReport, Parsed
from service.schemas import PingBatchResult, PingIn, PingResult

# The JSON ping batch, a GPX import, or a tracker protocol (OsmAnd, OwnTracks).
Door = Literal["json", "gpx", "tracker"]


def answer(
    outcome: Outcome, door: Door, *, single: bool = False, source: str | None = None
) -> PingBatchResult:
    """Count the batch's pings by status, then its answer at `door` (or raise its refusal).

    A tracker sends again what is refused, so one refused message refuses its request; a JSON
    batch (`single`: one ping object) or a GPX file is refused only if none of it was stored.
    The metrics name the door by `source` (osmand, owntracks, mqtt) where one is given.
    """
    results = outcome.pings
    count_pings([r.status for r in results], source or door)
    rejected = [r for r in results if r.status == "rejected"]
    if door == "tracker":
        reasons = [r.reason or "" for r in rejected] + [why for why in outcome.reports if why]
        if reasons:
            raise refusal(reasons[0], not_found_hint=": register the unit first")
    elif len(rejected) == len(results):
        raise _refused(rejected, door, single)
    return PingBatchResult(
        accepted=sum(r.status == "accepted" for r in results),
        duplicates=sum(r.status == "duplicate" for r in results),
        rejected=len(rejected),
        # A GPX import lists only the points that were not accepted.
        results=[r for r in results if r.status != "accepted"] if door == "gpx" else results,
    )


def _refused(rejected: list[PingResult], door: Door, single: bool) -> PatroliError:
    if door == "gpx":
        shown = _listing(rejected, 5, lambda r: f"point {r.index + 1}: {r.reason}")
        return InvalidInput(f"no track point was stored: {shown}")
    if single:
        return refusal(rejected[0].reason or "rejected")
    return InvalidInput(
        f"every ping was rejected: {_listing(rejected, 20, lambda r: f'[{r.index}] {r.reason}')}"
    )


def _listing(rejected: list[PingResult], most: int, item: Callable[[PingResult], str]) -> str:
    """The first `most` refusals, and how many more there were."""
    more = f"; and {len(rejected) - most} more" if len(rejected) > most else ""
    return "; ".join(map(item, rejected[:most])) + more


async def store_parsed(
    writer: GroupCommitter,
    principal: Principal,
    parsed: Sequence[Parsed],
    source: str,
    *,
    door: str | None = None,
) -> None:
    """Store parsed tracker messages; raises the error a tracker should see if any was refused.

    `door` names the way in for the metrics (default: the source).
    """
    pings = [(i, p) for i, p in enumerate(parsed) if isinstance(p, PingIn)]
    reports = [p for p in parsed if isinstance(p, DeviceReport)]
    outcome = await writer.store(principal, pings, reports=reports, source=source, detail=False)
    answer(outcome, "tracker", source=door or source)
