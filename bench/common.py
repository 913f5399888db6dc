"""Helpers shared by the benchmarks: running each backend and printing the table."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

Row = tuple[str, ...]


def for_backends(choice: str, run: Callable[[str, Path], list[Row]]) -> list[Row]:
    """Rows of `run(backend, workdir)` for "sqlite", "postgis" or "both", in a temp workdir."""
    names = ["sqlite", "postgis"] if choice == "both" else [choice]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="patroli-bench-") as tmp:
        for name in names:
            print(f"running {name} ...", file=sys.stderr)
            rows += run(name, Path(tmp))
    return rows


def print_table(header: Row, rows: Sequence[Row]) -> None:
    """Print rows as an aligned text table under a header and a rule."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
