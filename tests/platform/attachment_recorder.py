"""What a network monitor reported to the driver, as the monitor tests of the three platforms read it."""

from __future__ import annotations

import asyncio
import threading
import time

from m6t.protocol.values import Attachment


class AttachmentRecorder:
    """A monitor's callback that keeps every snapshot, when it came and on which thread, and wakes
    :meth:`next` at each one."""

    def __init__(self) -> None:
        self.snapshots: list[Attachment | None] = []
        self.times: list[float] = []
        """``time.monotonic()`` of each snapshot."""
        self.threads: set[int] = set()
        self.changed = asyncio.Event()

    def __call__(self, snapshot: Attachment | None) -> None:
        self.snapshots.append(snapshot)
        self.times.append(time.monotonic())
        self.threads.add(threading.get_ident())
        self.changed.set()

    async def next(self, timeout: float = 3.0) -> Attachment | None:
        """The snapshot reported since the last call (the latest, if several), within ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            await self.changed.wait()
        self.changed.clear()
        return self.snapshots[-1]
