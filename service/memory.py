"""Free C heap pages back to the system after large short-lived work (glibc's malloc_trim).

A long-running process that now and then reads a large piece (a window of fixes, a report)
leaves glibc holding the freed space in its heaps: a few long-lived objects allocated in
between keep it from shrinking, so the resident size only grows. `malloc_trim(0)` gives the
whole free pages anywhere in the heaps back; the scheduler calls it periodically.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library this process runs on
    except (OSError, AttributeError):
        return None  # not glibc (musl has no malloc_trim): nothing to give back this way
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def release_free_memory() -> bool:
    """Give the C heap's free pages back to the system; False where there is no malloc_trim."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
