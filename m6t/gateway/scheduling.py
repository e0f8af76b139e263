"""How much garbage collection one turn of the loop may do: bounded by time, not only by count.

A fixed number of entries per slice takes twice as long on a machine twice as slow (or busy), so the
driver runs small fixed-size chunks until a time limit is reached.  Portable and free of I/O apart from
the clock it is given, so the benchmarks use exactly the driver's policy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from m6t.gateway.core import GatewayCore

SLICE_LIMIT_S: Final = 0.002
"""Longest a garbage-collection turn runs before packets get the loop back (plus one chunk at most)."""
CHUNK: Final = 512
"""Wheel entries per chunk: under a millisecond even on a slow, busy core."""


def collect_for(
    core: GatewayCore,
    now: float,
    *,
    limit_s: float = SLICE_LIMIT_S,
    chunk: int = CHUNK,
    clock: Callable[[], float] = time.perf_counter,
) -> bool:
    """Collect in chunks until caught up (True) or ``limit_s`` has passed (False: call again soon)."""
    deadline = clock() + limit_s
    for _ in range(1_000_000):
        if core.collect_garbage(now, chunk):
            return True
        if clock() >= deadline:
            return False
    return False
