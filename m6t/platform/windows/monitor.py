"""The path toward the gateway on Windows: IP Helper change notifications, and ``GetBestRoute2`` look-ups.

``NotifyUnicastIpAddressChange(AF_INET)`` and ``NotifyRouteChange2(AF_INET)`` call back on threads of
Windows' own pool.  The callbacks only read the row's interface LUID (the row is valid during the call
only) and hand it to the asyncio loop with ``call_soon_threadsafe``; everything else happens on the loop.

Any IPv4 address or route change not on our own adapter is announced as a change; the client's tracker
decides when to ask Windows afresh which path it would use toward the gateway (``GetBestRoute2``: source
address, egress interface, next hop).  Our own adapter is ignored because Windows gives a Wintun adapter
IPv4 state of its own (an APIPA address, multicast and broadcast routes) that comes and goes with it and
says nothing about the path to the gateway.

A monitor scoped to an uplink (one tunnel per uplink, draft 2.5) asks ``GetBestRoute2`` with that interface's
LUID, and probes with a socket sending through it (``IP_UNICAST_IF``), as the tunnel's own socket does.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Collection
from ipaddress import IPv4Address

from m6t.platform.base import ChangeCallback, PlatformError
from m6t.platform.monitoring import ProbedMonitor, connected_udp_source
from m6t.platform.windows.iphlpapi import BestRoute, IpHelper, Subscription
from m6t.platform.windows.system import AF_INET, Winsock
from m6t.protocol.values import Attachment


class WindowsConnectivityMonitor(ProbedMonitor):
    """Announces IPv4 changes (not on our adapter) and looks the path toward ``gateway`` up."""

    def __init__(
        self,
        gateway: IPv4Address,
        ignore_interface: str,
        *,
        iphlpapi: IpHelper,
        winsock: Winsock | None = None,
        uplink: str | None = None,
    ) -> None:
        if uplink is not None and winsock is None:
            raise ValueError("a monitor scoped to an uplink probes through Winsock: pass winsock")
        super().__init__(gateway, ignore_interface, uplink)
        self._winsock = winsock
        self.events = 0
        """Notifications that concerned us (not our own adapter)."""
        self._ip = iphlpapi
        self._subscriptions: list[Subscription] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_change: ChangeCallback | None = None
        self._ignored_luid: int | None = None

    async def start(self, on_change: ChangeCallback) -> None:
        if self._loop is not None:
            raise RuntimeError("monitor already started")
        self._loop = asyncio.get_running_loop()
        self._on_change = on_change
        self._refresh_ignored()
        try:
            self._subscriptions.append(self._ip.subscribe_addresses(AF_INET, self._from_os_thread))
            self._subscriptions.append(self._ip.subscribe_routes(AF_INET, self._from_os_thread))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            # Returns once callbacks in progress are done; ours never wait on the loop, so no deadlock.
            self._ip.cancel(subscription)
        self._loop = None
        self._on_change = None

    async def lookup(self) -> Attachment | None:
        return await asyncio.to_thread(self.best_path)

    def best_path(self) -> Attachment | None:
        """Windows' path toward the gateway now, through :attr:`uplink` only when it is set (blocking IP Helper
        calls: run it off the loop)."""
        if self.uplink is None:
            return self._path(self._ip.best_route(self.gateway))
        luid = self._ip.alias_to_luid(self.uplink)
        return self._path(self._ip.best_route(self.gateway, luid=luid), self.uplink) if luid is not None else None

    def _path(self, route: BestRoute | None, name: str | None = None) -> Attachment | None:
        if route is None or not isinstance(route.source, IPv4Address) or route.source.is_unspecified:
            return None
        ignored = self._ignored_luid
        if ignored is not None and route.luid == ignored:
            return None  # through our own tunnel: no real path
        if name is None:
            name = self._ip.luid_to_alias(route.luid)
        if name is None:
            return None
        router = route.next_hop if isinstance(route.next_hop, IPv4Address) else None
        return Attachment(local_ipv4=route.source, interface=name, router=router)

    async def uplinks(self, *, ignore: Collection[str] = ()) -> tuple[Attachment, ...]:
        return await asyncio.to_thread(self.every_uplink, {self.ignore_interface, *ignore})

    def every_uplink(self, skipped: Collection[str]) -> tuple[Attachment, ...]:
        """Every interface holding an IPv4 address (GetUnicastIpAddressTable) that GetBestRoute2 scoped to it
        answers through it: the unscoped answer's first, then by route metric and alias (blocking)."""
        preferred = self._ip.best_route(self.gateway)
        ranked: list[tuple[bool, int, str, Attachment]] = []
        for luid in dict.fromkeys(luid for luid, _address in self._ip.unicast_addresses(AF_INET)):
            name = self._ip.luid_to_alias(luid)
            if name is None or name in skipped:
                continue
            route = self._ip.best_route(self.gateway, luid=luid)
            path = self._path(route, name)
            if route is not None and path is not None:
                first = preferred is not None and preferred.luid == luid
                ranked.append((not first, route.metric, name, path))
        return tuple(path for *_, path in sorted(ranked, key=lambda entry: entry[:3]))

    def _source_toward(self, address: str) -> str:
        uplink, winsock = self.uplink, self._winsock
        if uplink is None or winsock is None:
            return super()._source_toward(address)
        luid = self._ip.alias_to_luid(uplink)
        index = self._ip.luid_to_index(luid) if luid is not None else None
        if index is None:
            raise OSError(f"no interface named {uplink}")

        def prepare(sock: socket.socket) -> None:
            try:
                winsock.set_unicast_interface(sock, index)
            except PlatformError as exc:  # the probe answers "no path" on an OSError, never raises
                raise OSError(str(exc)) from exc

        return connected_udp_source(address, prepare=prepare)

    def _holding(self, local: IPv4Address) -> Attachment | None:
        # The route lookup is a cheap query (no change), so the probe may run it on the loop; its next hop is
        # only trusted when it agrees with the socket's source.  Scoped to an uplink, a source without a
        # route through it is no path.
        try:
            current = self.best_path()
        except Exception:
            current = None
        if current is not None and current.local_ipv4 == local:
            return current
        return super()._holding(local) if self.uplink is None else None

    # Events ------------------------------------------------------------------------------------------

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
        on_change = self._on_change
        if on_change is None:
            return  # stopped since the OS thread queued this
        self._refresh_ignored()
        if luid is not None and luid == self._ignored_luid:
            return
        self.events += 1
        on_change()
