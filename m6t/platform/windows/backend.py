"""The Windows backend: Wintun adapters, the IP Helper API, a notification-driven monitor, UDP sockets
read by a thread (the Proactor loop has no ``add_reader``).

IP Helper changes are quick kernel calls, but they can stall (the Network Store Interface serializes them
behind other configuration work), so the coroutines run them in a worker thread rather than on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from ipaddress import IPv4Address, IPv6Address

from m6t.platform.base import Backend, PlatformError, PlatformErrorCode
from m6t.platform.windows.iphlpapi import IpHelper
from m6t.platform.windows.monitor import WindowsConnectivityMonitor
from m6t.platform.windows.system import (
    AF_INET6,
    TCPIP6_PARAMETERS,
    Kernel32,
    WinApi,
    Winsock,
    is_admin,
    native_api,
)
from m6t.platform.windows.udp import WindowsUdpChannel
from m6t.platform.windows.wintun import WINTUN_HINT, Wintun, WintunTun
from m6t.protocol.values import Route

log = logging.getLogger(__name__)

DISABLED_COMPONENTS = "DisabledComponents"
IPV6_DISABLED_NONTUNNEL = 0x10
"""DisabledComponents bit that turns IPv6 off on every non-tunnel interface, Wintun's included (its IfType
is IF_TYPE_PROP_VIRTUAL, not a tunnel type).  0xFF ("all off") contains it; 0x01 (tunnel interfaces such as
6to4/Teredo) and 0x20 (prefer IPv4) leave Wintun's IPv6 alone."""


def ipv6_disabled_by(disabled_components: int | None) -> bool:
    return disabled_components is not None and bool(disabled_components & IPV6_DISABLED_NONTUNNEL)


class WindowsBackend(Backend):
    name = "windows"

    def __init__(self, api: WinApi | None = None) -> None:
        self.api = api if api is not None else native_api()
        self.kernel32 = Kernel32(self.api)
        self.iphlpapi = IpHelper(self.api)
        self.winsock = Winsock(self.api)
        self.driver_version: str | None = None
        self._wintun: Wintun | None = None
        self._tuns: weakref.WeakValueDictionary[str, WintunTun] = weakref.WeakValueDictionary()

    def wintun(self) -> Wintun:
        """wintun.dll, loaded on first use (``check`` reports it missing before anything needs it)."""
        if self._wintun is None:
            self._wintun = Wintun.load(self.api, self.kernel32)
        return self._wintun

    def check(self) -> list[PlatformError]:
        problems: list[PlatformError] = []
        try:
            wintun = self.wintun()
        except PlatformError as exc:
            problems.append(PlatformError(str(exc), hint=exc.hint or WINTUN_HINT, code=PlatformErrorCode.TUN_MISSING))
        else:
            # 0 until the first adapter loads the driver: not a problem, only a diagnostic.
            self.driver_version = wintun.driver_version()
            log.info("Wintun driver %s", self.driver_version or "not loaded yet")
        try:
            admin = is_admin(self.api)
        except Exception:
            log.exception("cannot tell whether this process is elevated")
            admin = False
        if not admin:
            problems.append(
                PlatformError(
                    "this process lacks Administrator privileges "
                    "(needed to create the tunnel adapter and change its addresses and routes)",
                    hint="run the m6t helper as its Windows service (LocalSystem) or from an elevated prompt",
                    code=PlatformErrorCode.PERMISSION_DENIED,
                )
            )
        disabled = self.api.registry_dword(TCPIP6_PARAMETERS, DISABLED_COMPONENTS)
        if ipv6_disabled_by(disabled):
            problems.append(
                PlatformError(
                    f"IPv6 is disabled on this host ({DISABLED_COMPONENTS} = 0x{disabled or 0:X})",
                    hint=f"set HKLM\\{TCPIP6_PARAMETERS}\\{DISABLED_COMPONENTS} to 0 "
                    "(0x20, prefer IPv4, is fine too) and restart Windows",
                    code=PlatformErrorCode.IPV6_DISABLED,
                )
            )
        return problems

    def open_tun(self, name: str) -> WintunTun:
        tun = WintunTun(name, wintun=self.wintun(), kernel32=self.kernel32, iphlpapi=self.iphlpapi)
        self._tuns[tun.name] = tun
        return tun

    def _luid_or_none(self, ifname: str) -> int | None:
        tun = self._tuns.get(ifname)
        if tun is not None and tun.session is not None:
            return tun.luid
        return self.iphlpapi.alias_to_luid(ifname)

    def _luid(self, ifname: str) -> int:
        luid = self._luid_or_none(ifname)
        if luid is None:
            raise PlatformError(f"no interface named {ifname}")
        return luid

    async def set_mtu(self, ifname: str, mtu: int) -> None:
        # The tunnel carries IPv6 only: the IPv6 NlMtu is the one that counts.
        await asyncio.to_thread(self.iphlpapi.set_mtu, self._luid(ifname), AF_INET6, mtu)

    async def set_link_up(self, ifname: str) -> None:
        # A Wintun adapter is up (media connected) while a session runs: what remains is to make its IPv6
        # side a plain point-to-point link (no router discovery, no DAD).
        await asyncio.to_thread(self.iphlpapi.configure_tunnel, self._luid(ifname))

    async def replace_address(self, ifname: str, address: IPv6Address, prefixlen: int) -> None:
        await asyncio.to_thread(self.iphlpapi.replace_address, self._luid(ifname), address, prefixlen)

    async def remove_address(self, ifname: str, address: IPv6Address, prefixlen: int) -> None:
        luid = self._luid_or_none(ifname)
        if luid is None:
            return  # the interface is gone, and the address with it
        await asyncio.to_thread(self.iphlpapi.remove_address, luid, address, prefixlen)

    async def replace_route(self, ifname: str, route: Route) -> None:
        if route.source is not None:
            raise PlatformError("source-specific routes are not used on Windows (source_routes is False)")
        await asyncio.to_thread(self.iphlpapi.replace_route, self._luid(ifname), route.network, route.metric)

    async def remove_route(self, ifname: str, route: Route) -> None:
        luid = self._luid_or_none(ifname)
        if luid is None:
            return
        await asyncio.to_thread(self.iphlpapi.remove_route, luid, route.network, route.metric)

    def interface_exists(self, ifname: str) -> bool:
        return self.iphlpapi.alias_to_luid(ifname) is not None

    def open_udp(self, gateway: tuple[IPv4Address, int], *, uplink: str | None = None) -> WindowsUdpChannel:
        index = None
        if uplink is not None:
            luid = self.iphlpapi.alias_to_luid(uplink)
            index = self.iphlpapi.luid_to_index(luid) if luid is not None else None
            if index is None:
                raise PlatformError(f"no interface named {uplink}")
        return WindowsUdpChannel(gateway, winsock=self.winsock, unicast_if=index)

    def connectivity_monitor(
        self, gateway: IPv4Address, ignore_interface: str, *, uplink: str | None = None
    ) -> WindowsConnectivityMonitor:
        return WindowsConnectivityMonitor(
            gateway, ignore_interface, iphlpapi=self.iphlpapi, winsock=self.winsock, uplink=uplink
        )

    async def close(self) -> None:
        # Adapters belong to their TunDevice (the driver closes it); the DLLs stay loaded for the process.
        self._tuns.clear()
