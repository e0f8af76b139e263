"""Bounded waiting: every wait in the lab ends, by count and by time."""

from __future__ import annotations

import time
from collections.abc import Callable

from m6t.lab.errors import LabError


def wait_until(
    condition: Callable[[], bool],
    *,
    what: str,
    timeout: float = 5.0,
    interval: float = 0.05,
) -> None:
    """Poll condition until it is true; raise LabError naming `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    # The count bound also holds if the clock misbehaves or the condition itself is slow.
    max_polls = max(1, int(timeout / interval) + 1)
    for _ in range(max_polls):
        if condition():
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    if condition():
        return
    raise LabError(f"timed out after {timeout:g} s waiting for {what}")
