"""IPv4 connectivity toward the gateway, from IP Helper change notifications.

``NotifyUnicastIpAddressChange(AF_INET)`` and ``NotifyRouteChange2(AF_INET)`` call back on threads of
Windows' own pool.  The callbacks only read the row's interface LUID (the row is valid during the call
only) and hand it to the asyncio loop with ``call_soon_threadsafe``; everything else happens on the loop.

As on Linux, events are only a trigger: any IPv4 address or route change not on our own adapter starts a
quiet-period timer, and when the burst is over Windows is asked afresh which path it would use toward the
gateway (``GetBestRoute2``: source address, egress interface, next hop).  Our own adapter is ignored
because Windows gives a Wintun adapter IPv4 state of its own (an APIPA address, multicast and broadcast
routes) that comes and goes with it and says nothing about the path to the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from ipaddress import IPv4Address

from m6t.platform.base import AttachmentCallback
from m6t.platform.monitoring import DEFAULT_MAX_DELAY, DEFAULT_QUIET, DebouncedMonitor, interface_of
from m6t.platform.windows.iphlpapi import IpHelper, Subscription
from m6t.platform.windows.system import AF_INET
from m6t.protocol.values import Attachment

log = logging.getLogger(__name__)


class WindowsConnectivityMonitor(DebouncedMonitor):
    """Reports the path toward ``gateway`` after every debounced IPv4 change (not on our adapter)."""

    def __init__(
        self,
        gateway: IPv4Address,
        ignore_interface: str,
        *,
        iphlpapi: IpHelper,
        quiet: float = DEFAULT_QUIET,
        max_delay: float = DEFAULT_MAX_DELAY,
    ) -> None:
        super().__init__(gateway, ignore_interface, quiet=quiet, max_delay=max_delay)
        self.events = 0
        """Notifications that concerned us (not our own adapter)."""
        self._ip = iphlpapi
        self._subscriptions: list[Subscription] = []
        self._ignored_luid: int | None = None

    async def start(self, on_change: AttachmentCallback) -> None:
        if self._loop is not None:
            raise RuntimeError("monitor already started")
        self._loop = asyncio.get_running_loop()
        self._on_change = on_change
        self._refresh_ignored()
        try:
            # Subscribed before the first lookup, so that a change racing with it is not lost.
            self._subscriptions.append(self._ip.subscribe_addresses(AF_INET, self._from_os_thread))
            self._subscriptions.append(self._ip.subscribe_routes(AF_INET, self._from_os_thread))
            await self._evaluate()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            # Returns once callbacks in progress are done; ours never wait on the loop, so no deadlock.
            self._ip.cancel(subscription)
        await self._cancel_pending()
        self._loop = None
        self._on_change = None

    def probe(self) -> Attachment | None:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                # A UDP connect only selects a route and a source address: nothing is sent.
                sock.connect((str(self.gateway), 9))
                local = IPv4Address(sock.getsockname()[0])
        except OSError:
            return None
        if local.is_unspecified:
            return None
        known = self._known(local)
        if known is not None:
            return known
        # A source the monitor has not reported yet.  The route lookup is a cheap query (no change), so
        # it may run here; its next hop is only trusted when it agrees with the socket's source.
        try:
            current = self.lookup()
        except Exception:
            current = None
        if current is not None and current.local_ipv4 == local:
            return current
        name = interface_of(local)
        return Attachment(local_ipv4=local, interface=name, router=None) if name is not None else None

    def lookup(self) -> Attachment | None:
        """Windows' path toward the gateway now (blocking IP Helper calls: run it off the loop)."""
        route = self._ip.best_route(self.gateway)
        if route is None or not isinstance(route.source, IPv4Address) or route.source.is_unspecified:
            return None
        ignored = self._ignored_luid
        if ignored is not None and route.luid == ignored:
            return None  # through our own tunnel: no real path
        name = self._ip.luid_to_alias(route.luid)
        if name is None:
            return None
        router = route.next_hop if isinstance(route.next_hop, IPv4Address) else None
        return Attachment(local_ipv4=route.source, interface=name, router=router)

    # Events ------------------------------------------------------------------------------------------

    async def _snapshot(self) -> Attachment | None:
        return await asyncio.to_thread(self.lookup)

    def _from_os_thread(self, luid: int | None) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed while Windows was calling us
            loop.call_soon_threadsafe(self._on_event, luid)

    def _refresh_ignored(self) -> None:
        # Gone or not there yet: the last LUID seen still recognizes the adapter's last events.
        luid = self._ip.alias_to_luid(self.ignore_interface)
        if luid is not None:
            self._ignored_luid = luid

    def _on_event(self, luid: int | None) -> None:
        if self._loop is None:
            return  # stopped since the OS thread queued this
        self._refresh_ignored()
        if luid is not None and luid == self._ignored_luid:
            return
        self.events += 1
        self._kick()
