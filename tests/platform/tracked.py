"""A connectivity monitor run the way the client driver runs it, for the monitor tests of every OS.

The monitor announces changes to a connectivity tracker; the look-ups the tracker asks for are made, and
its decisions reported to ``on_attachment``, on the loop's thread.  The backstop probe is not run on its
own (the tests probe when they want to), so what is reported comes from notifications and look-ups only.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from m6t.client.tracker import (
    DEFAULT_MAX_DELAY,
    DEFAULT_QUIET,
    Attach,
    ConnectivityTracker,
    Detach,
    LookUp,
    TrackerSettings,
)
from m6t.platform.base import ConnectivityMonitor
from m6t.protocol.values import Attachment

OnAttachment = Callable[[Attachment | None], None]


class Tracked:
    def __init__(
        self, monitor: ConnectivityMonitor, *, quiet: float = DEFAULT_QUIET, max_delay: float = DEFAULT_MAX_DELAY
    ) -> None:
        self.monitor = monitor
        self.tracker = ConnectivityTracker(TrackerSettings(quiet=quiet, max_delay=max_delay, probe_interval=1e6))
        self.change_threads: set[int] = set()
        """Threads the monitor announced changes on (the loop's only, or it is a bug)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_attachment: OnAttachment | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._lookups: set[asyncio.Task[None]] = set()

    @property
    def evaluations(self) -> int:
        """Look-ups answered, the first included."""
        return self.tracker.evaluations

    async def start(self, on_attachment: OnAttachment) -> None:
        """Subscribe and make the first look-up: its snapshot is reported before this returns."""
        self._loop = asyncio.get_running_loop()
        self._on_attachment = on_attachment
        await self.monitor.start(self._changed)
        self.tracker.watch(self._loop.time())
        try:
            first = await self.monitor.lookup()
        except BaseException:
            await self.stop()
            raise
        self.tracker.looked_up(first, self._loop.time())
        self._carry_out()

    async def stop(self) -> None:
        await self.monitor.stop()
        self.tracker.unwatch()
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._lookups):
            task.cancel()
        self._on_attachment = None

    def probe(self) -> Attachment | None:
        """The backstop's view now: the probe's answer, as the tracker reads it."""
        return self.tracker.path_of(self.monitor.probe())

    def _changed(self) -> None:
        assert self._loop is not None
        self.change_threads.add(threading.get_ident())
        self.tracker.changed(self._loop.time())
        self._carry_out()

    def _tick(self) -> None:
        assert self._loop is not None
        self._timer = None
        self.tracker.tick(self._loop.time())
        self._carry_out()

    def _carry_out(self) -> None:
        loop = self._loop
        assert loop is not None
        for decision in self.tracker.pop_decisions():
            if isinstance(decision, LookUp):
                task = loop.create_task(self._look_up())
                self._lookups.add(task)
                task.add_done_callback(self._lookups.discard)
            elif isinstance(decision, Attach | Detach) and self._on_attachment is not None:
                self._on_attachment(decision.attachment if isinstance(decision, Attach) else None)
        if self._timer is not None:
            self._timer.cancel()
        deadline = self.tracker.next_deadline()
        self._timer = loop.call_at(deadline, self._tick) if deadline is not None else None

    async def _look_up(self) -> None:
        assert self._loop is not None
        try:
            answer = await self.monitor.lookup()
        except Exception:
            self.tracker.lookup_failed(self._loop.time())
        else:
            self.tracker.looked_up(answer, self._loop.time())
        self._carry_out()
