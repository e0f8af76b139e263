"""A bounded in-memory log of the helper's events, readable through the control API (``log``).

Bounded so that a tunnel flapping for days cannot grow the helper; sequence numbers let a reader ask
for "what is new since I last looked" and learn how much it missed.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from m6t.client.api.schema import LogEntry

LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class LogPage:
    entries: list[LogEntry]
    next: int
    dropped: int


class RingLog:
    def __init__(self, capacity: int = 2000, clock: Callable[[], float] = time.time) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._entries: deque[LogEntry] = deque(maxlen=capacity)
        self._next_seq = 1
        self._clock = clock

    @property
    def capacity(self) -> int:
        maxlen = self._entries.maxlen
        assert maxlen is not None
        return maxlen

    def append(self, level: str, message: str, *, event: str | None = None, code: int | None = None) -> LogEntry:
        entry: LogEntry = {"seq": self._next_seq, "time": self._clock(), "level": level, "message": message}
        if event is not None:
            entry["event"] = event
        if code is not None:
            entry["code"] = code
        self._next_seq += 1
        self._entries.append(entry)
        return entry

    def read(self, since: int = 0, limit: int = 200) -> LogPage:
        """Entries with ``seq > since``, the newest ``limit`` of them, oldest first."""
        oldest = self._entries[0]["seq"] if self._entries else self._next_seq
        dropped = max(0, oldest - since - 1)
        fresh = [entry for entry in self._entries if entry["seq"] > since]
        if limit >= 0:
            fresh = fresh[-limit:] if limit else []
        return LogPage(entries=fresh, next=self._next_seq - 1, dropped=dropped)

    def __len__(self) -> int:
        return len(self._entries)
