"""What every OS's connectivity monitor shares: the debounce, and the interface lookup by address.

OS events (rtnetlink, the routing socket, IP Helper notifications) are only a *trigger*: a burst of them
(DHCP, Wi-Fi roaming, a NAT box rebooting) starts a quiet-period timer, and when the burst is over the OS
is asked afresh which path it would use toward the gateway.  Only a snapshot that differs from the last one
reported reaches the client, so a dozen events become at most one reattachment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from abc import abstractmethod
from ipaddress import IPv4Address

import psutil

from m6t.platform.base import AttachmentCallback, ConnectivityMonitor
from m6t.protocol.values import Attachment

log = logging.getLogger(__name__)

DEFAULT_QUIET = 0.15
"""Quiet period closing a burst: DHCP and link changes come as several events within a few ms."""
DEFAULT_MAX_DELAY = 1.0
"""A burst that never quiets down is still evaluated this long after its first event."""


def interface_of(address: IPv4Address) -> str | None:
    """The name of the interface holding ``address`` (Windows: its alias), if any."""
    wanted = str(address)
    for name, addresses in psutil.net_if_addrs().items():
        for entry in addresses:
            if entry.family == socket.AF_INET and entry.address == wanted:
                return str(name)
    return None


class DebouncedMonitor(ConnectivityMonitor):
    """A monitor whose subclass feeds OS events to :meth:`_kick` and answers :meth:`_snapshot`."""

    def __init__(
        self,
        gateway: IPv4Address,
        ignore_interface: str,
        *,
        quiet: float = DEFAULT_QUIET,
        max_delay: float = DEFAULT_MAX_DELAY,
    ) -> None:
        self.gateway = gateway
        self.ignore_interface = ignore_interface
        self.quiet = quiet
        self.max_delay = max_delay
        self.evaluations = 0
        """Snapshots computed (reported or not): lets tests and diagnostics see the debouncing."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_change: AttachmentCallback | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._burst_start: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._reported = False
        self._last: Attachment | None = None

    @property
    def last(self) -> Attachment | None:
        """The last snapshot reported."""
        return self._last

    @abstractmethod
    async def _snapshot(self) -> Attachment | None:
        """Ask the OS now which path it would use toward the gateway (``None``: no usable IPv4 path)."""

    def _known(self, local: IPv4Address) -> Attachment | None:
        """The last snapshot if it still holds for this source address (the probe backstop's fast answer)."""
        last = self._last
        return last if last is not None and last.local_ipv4 == local else None

    async def _cancel_pending(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _kick(self) -> None:
        loop = self._loop
        if loop is None:
            return
        now = loop.time()
        if self._burst_start is None:
            self._burst_start = now
        due = min(now + self.quiet, self._burst_start + self.max_delay)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(due, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._burst_start = None
        if self._task is not None and not self._task.done():
            # An evaluation is running: its answer may predate this burst, so run once more after it.
            self._again = True
            return
        if self._loop is not None:
            self._task = self._loop.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self._again = False
            try:
                await self._evaluate()
            except Exception:
                log.exception("connectivity snapshot toward %s failed", self.gateway)
            if not self._again:
                return

    async def _evaluate(self) -> None:
        snapshot = await self._snapshot()
        self.evaluations += 1
        if self._reported and snapshot == self._last:
            return
        self._reported = True
        self._last = snapshot
        if self._on_change is not None:
            try:
                self._on_change(snapshot)
            except Exception:
                log.exception("connectivity callback failed")
