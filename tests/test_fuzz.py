"""The fuzz gate: a short schemathesis run against `patroli serve` on each backend.

Every operation of the OpenAPI document is called with generated valid and invalid requests
(authenticated with the admin key); a server error, an undocumented status code or content
type, or a body that does not match its documented schema fails the test. tests/fuzz.py has the
harness and the long run.
"""

from __future__ import annotations

from pathlib import Path

from tests.fuzz import fuzz, unexpected_tracebacks

# Cases per operation: about 2,500-3,500 cases per backend in all, in about a minute.
EXAMPLES = 25
MIN_CASES = 2000


def test_fuzzing_every_operation_finds_no_failure(
    database_url: str, backend: str, tmp_path: Path
) -> None:
    result = fuzz(database_url, backend, EXAMPLES, tmp_path, deterministic=True)
    print(result.summary())
    tracebacks = unexpected_tracebacks(result.server_log)
    assert not tracebacks, tracebacks[0][-5000:]
    assert result.passed, f"{result.summary()}\n{result.output[-15000:]}"
    assert result.generated >= MIN_CASES, result.summary()
