"""On-demand MTU probe: the largest IPv6 packet the probe address echoes through the tunnel.

Sans-I/O: the session asks :meth:`MtuSearch.poll` which size to send now and reports answers; the search
never sends or reads a clock.  The configured MTU is tried first (the usual answer, found in one round
trip), then 1280 (below which nothing is worth searching), then a binary search between the two.  Each
size gets a few tries, so one lost echo does not shrink the answer.
"""

from __future__ import annotations

from m6t.protocol import IPV6_MIN_MTU

ECHO_OVERHEAD = 48
"""IPv6 header (40) + ICMPv6 echo header (8): an echo of size S carries S - 48 data bytes."""


class MtuSearch:
    def __init__(
        self,
        high: int,
        now: float,
        *,
        low: int = IPV6_MIN_MTU,
        per_try: float = 1.0,
        tries: int = 2,
        overall: float = 30.0,
    ) -> None:
        if not ECHO_OVERHEAD <= low <= high:
            raise ValueError(f"MTU search bounds {low}..{high} are not usable")
        self.low = low
        self.high = high
        self.per_try = per_try
        self.tries = max(1, tries)
        self.started = now
        self.deadline_overall = now + overall
        self.tried: list[tuple[int, bool]] = []
        self.good: int | None = None
        """Largest size answered."""
        self.bad = high + 1
        """Smallest size that went unanswered (every try)."""
        self.current: int | None = None
        self._attempts = 0
        self._deadline = 0.0
        self.finished = False
        self.reason = ""

    def _next_size(self) -> int | None:
        tested = {size for size, _ in self.tried}
        if self.good is None:
            if self.high not in tested:
                return self.high
            if self.low not in tested:
                return self.low
            return None
        if self.bad - self.good <= 1:
            return None
        return (self.good + self.bad) // 2

    def _finish(self, reason: str = "") -> None:
        self.finished = True
        self.current = None
        self.reason = reason if reason else ("" if self.good is not None else "no echo answered")

    def cancel(self, reason: str) -> None:
        if not self.finished:
            self._finish(reason)

    def poll(self, now: float) -> int | None:
        """The size to send an echo of now, or ``None`` (waiting, or finished)."""
        if self.finished:
            return None
        if now >= self.deadline_overall:
            self._finish("" if self.good is not None else "timed out")
            return None
        if self.current is not None:
            if now < self._deadline:
                return None
            if self._attempts < self.tries:
                self._attempts += 1
                self._deadline = now + self.per_try
                return self.current
            self.tried.append((self.current, False))
            self.bad = min(self.bad, self.current)
            self.current = None
        size = self._next_size()
        if size is None:
            self._finish()
            return None
        self.current = size
        self._attempts = 1
        self._deadline = now + self.per_try
        return size

    def answered(self, size: int) -> None:
        """An echo of ``size`` came back whole."""
        if self.finished or size != self.current:
            return
        self.tried.append((size, True))
        self.good = size if self.good is None else max(self.good, size)
        self.current = None

    def deadline(self) -> float | None:
        if self.finished:
            return None
        if self.current is None:
            return self.deadline_overall
        return min(self._deadline, self.deadline_overall)
