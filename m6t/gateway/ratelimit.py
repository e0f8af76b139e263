"""Rate limiting of state creation per source IPv4 address, ports not considered (draft 6.1.3).

A token bucket in its GCRA form: one float per address, the "theoretical arrival time" of the next
allowed creation, so that an address costs a dict entry and a float rather than an object.

Forgetting addresses must not cost a scan either.  An address whose time is in the past is the same as
an unknown one, and no time lies more than ``burst / rate`` seconds ahead, so addresses live in two
generations that rotate every period of at least that length: whatever is still in the older generation
when it rotates out cannot be limiting anyone, and is released a bounded number at a time.
"""

from __future__ import annotations

from typing import Final

_EPSILON: Final = 1e-9
"""Absorbs float rounding so that exactly ``burst`` creations fit in a burst."""
MIN_PERIOD_S: Final = 1.0


class NewStateLimiter:
    """Allows ``burst`` state creations at once per IPv4 address, then ``rate_per_s`` per second."""

    __slots__ = ("_current", "_horizon", "_interval", "_period", "_previous", "_retired", "_rotate_at")

    def __init__(self, rate_per_s: float, burst: int, now: float) -> None:
        if not rate_per_s > 0:
            raise ValueError(f"the rate of new states per IPv4 address must be positive, not {rate_per_s}")
        if burst < 1:
            raise ValueError(f"the burst of new states per IPv4 address must be at least 1, not {burst}")
        self._interval = 1.0 / rate_per_s
        self._horizon = burst * self._interval + _EPSILON
        self._period = max(self._horizon, MIN_PERIOD_S)
        self._current: dict[int, float] = {}
        self._previous: dict[int, float] = {}
        self._retired: list[dict[int, float]] = []
        self._rotate_at = now + self._period

    def __len__(self) -> int:
        """Addresses remembered (some of them possibly already back to a full bucket)."""
        return len(self._current) + len(self._previous) + sum(map(len, self._retired))

    def allow(self, ipv4: int, now: float) -> bool:
        """Take one creation from the address's bucket; False (nothing taken) when it is empty."""
        if now >= self._rotate_at:
            self._rotate(now)
        current = self._current
        tat = current.get(ipv4)
        if tat is None:
            tat = self._previous.pop(ipv4, now)
        tat = max(tat, now)
        after = tat + self._interval
        if after - now > self._horizon:
            current[ipv4] = tat
            return False
        current[ipv4] = after
        return True

    def _rotate(self, now: float) -> None:
        if self._previous:
            self._retired.append(self._previous)
        if now >= self._rotate_at + self._period:
            # Idle for two periods or more: even the current generation can no longer limit anyone.
            if self._current:
                self._retired.append(self._current)
            self._previous = {}
        else:
            self._previous = self._current
        self._current = {}
        self._rotate_at = now + self._period

    def release(self, now: float, budget: int) -> int:
        """Rotate if due and free up to ``budget`` retired addresses; returns how many were freed."""
        if now >= self._rotate_at:
            self._rotate(now)
        freed = 0
        retired = self._retired
        while retired and freed < budget:
            generation = retired[-1]
            popitem = generation.popitem
            for _ in range(min(len(generation), budget - freed)):
                popitem()
                freed += 1
            if not generation:
                retired.pop()
        return freed
