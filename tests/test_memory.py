"""Free C heap space goes back to the system (glibc's malloc_trim)."""

from __future__ import annotations

import os

import pytest

from service.memory import release_free_memory


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def test_fragmented_free_space_is_given_back() -> None:
    if not release_free_memory():
        pytest.skip("no malloc_trim in this C library")
    blocks = [bytearray(4096) for _ in range(50_000)]  # 200 MB in malloc'ed 4 KB chunks
    kept = blocks[::64]  # one chunk in 64 stays: the heap cannot shrink from its top
    del blocks
    before = _rss_mb()
    assert release_free_memory()
    after = _rss_mb()
    assert before - after > 100, (before, after)
    assert len(kept) == 782
