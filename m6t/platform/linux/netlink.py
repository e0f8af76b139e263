"""Interface configuration through rtnetlink (pyroute2's ``AsyncIPRoute``) and ``/proc/sys``.

Every change uses *replace* semantics and every removal tolerates absence, so that the caller can retry a
half-done reconfiguration (after a crash, a race with NetworkManager, ...) without special cases.  No
``ip`` command is ever spawned: it may be missing, and parsing its output is fragile.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any, TypeVar

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from m6t.platform.base import PlatformError, PlatformErrorCode

assert sys.platform == "linux"

T = TypeVar("T")

IFA_F_NODAD = 0x02
RTM_F_FIB_MATCH = 0x2000
"""<linux/rtnetlink.h>: answer a route look-up with the FIB entry that matched, not the resulting route."""
IFF_UP = 0x1
IFF_LOOPBACK = 0x8

_ABSENT = frozenset({errno.EADDRNOTAVAIL, errno.ESRCH, errno.ENOENT, errno.ENODEV})
"""What the kernel answers when asked to delete something that is not there (or whose link is gone)."""

_UNREACHABLE = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EINVAL, errno.EACCES, errno.EPERM, errno.ENODEV})
"""``route get`` answers meaning "no usable path": no route, unreachable/blackhole/prohibit routes."""


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """The kernel's answer to ``ip route get``: the source it would pick, the egress link, the next hop."""

    prefsrc: IPv4Address | IPv6Address | None
    oif: int | None
    gateway: IPv4Address | IPv6Address | None
    metric: int | None = None
    """The matching route's metric, when the look-up asked for the route itself (scoped look-ups do)."""


def ifindex(ifname: str) -> int:
    try:
        return socket.if_nametoindex(ifname)
    except OSError as exc:
        raise PlatformError(f"no interface named {ifname}") from exc


def _ifindex_or_none(ifname: str) -> int | None:
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        return None


class Netlink:
    """One rtnetlink socket, opened lazily on the running loop (and reopened if the loop changes)."""

    def __init__(self) -> None:
        self._ipr: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _socket(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._ipr is None or self._loop is not loop:
            self.close()
            self._ipr = AsyncIPRoute(use_event_loop=loop)
            self._loop = loop
        return self._ipr

    async def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        ipr = self._socket()
        try:
            return await getattr(ipr, method)(*args, **kwargs)
        except NetlinkError as exc:
            raise PlatformError(f"{what}: {os.strerror(exc.code)}", code=PlatformErrorCode.of_errno(exc.code)) from exc

    async def set_mtu(self, ifname: str, mtu: int) -> None:
        await self._call(f"set MTU {mtu} on {ifname}", "link", "set", index=ifindex(ifname), mtu=mtu)

    async def set_link_up(self, ifname: str) -> None:
        await self._call(f"set {ifname} up", "link", "set", index=ifindex(ifname), state="up")

    async def replace_address(self, ifname: str, address: IPv4Address | IPv6Address, prefixlen: int) -> None:
        # IPv6 addresses go in with NODAD: otherwise the kernel marks them tentative and finishes that
        # asynchronously even on a TUN (which skips DAD), so packets to or from the address sent right
        # after this call would be dropped.  48 random bits make a duplicate moot anyway.
        flags = IFA_F_NODAD if address.version == 6 else 0
        await self._call(
            f"add address {address}/{prefixlen} to {ifname}",
            "addr",
            "replace",
            index=ifindex(ifname),
            address=str(address),
            prefixlen=prefixlen,
            flags=flags,
        )

    async def remove_address(self, ifname: str, address: IPv4Address | IPv6Address, prefixlen: int) -> None:
        index = _ifindex_or_none(ifname)
        if index is None:
            return
        try:
            await self._socket().addr("del", index=index, address=str(address), prefixlen=prefixlen)
        except NetlinkError as exc:
            if exc.code not in _ABSENT:
                raise PlatformError(
                    f"remove address {address}/{prefixlen} from {ifname}: {os.strerror(exc.code)}",
                    code=PlatformErrorCode.of_errno(exc.code),
                ) from exc

    async def replace_route(
        self, ifname: str, network: IPv4Network | IPv6Network, metric: int, source: IPv6Network | None = None
    ) -> None:
        """``source``: only for packets from there (IPv6 source-specific routing, RTA_SRC)."""
        await self._call(
            f"add route {network}{_from(source)} metric {metric} dev {ifname}",
            "route",
            "replace",
            **_route_spec(ifindex(ifname), network, metric, source),
        )

    async def remove_route(
        self, ifname: str, network: IPv4Network | IPv6Network, metric: int, source: IPv6Network | None = None
    ) -> None:
        index = _ifindex_or_none(ifname)
        if index is None:
            return
        try:
            await self._socket().route("del", **_route_spec(index, network, metric, source))
        except NetlinkError as exc:
            if exc.code not in _ABSENT:
                raise PlatformError(
                    f"remove route {network}{_from(source)} metric {metric} dev {ifname}: {os.strerror(exc.code)}",
                    code=PlatformErrorCode.of_errno(exc.code),
                ) from exc

    async def route_get(self, destination: IPv4Address | IPv6Address, *, oif: int | None = None) -> RouteInfo | None:
        """The path the kernel would use toward ``destination`` now; ``None`` when it has none.

        ``oif``: the path through that interface only (``RTA_OIF`` in the request, ``ip route get ... oif``),
        which a socket bound to it (``SO_BINDTODEVICE``) takes: the FIB look-up then skips routes whose next
        hop is on another interface.  The kernel answers such a request even when no route goes through the
        interface, assuming the destination on-link ("Apparently, routing tables are wrong. Assume, that the
        destination is on link", ``ip_route_output_key_hash_rcu``), so the route itself is asked for too
        (``RTM_F_FIB_MATCH``, Linux 4.13+: the FIB entry that matched, EHOSTUNREACH when none did); without
        one the answer is ``None``, and with one it carries the route's metric.
        """
        if oif is None:
            return await self._route_get(destination)
        matched = await self._route_get(destination, oif=oif, flags=RTM_F_FIB_MATCH)
        if matched is None:
            return None
        info = await self._route_get(destination, oif=oif)
        if info is None or info.oif != oif:
            return None
        return RouteInfo(prefsrc=info.prefsrc, oif=info.oif, gateway=info.gateway, metric=matched.metric)

    async def _route_get(self, destination: IPv4Address | IPv6Address, **request: int) -> RouteInfo | None:
        try:
            answer = await self._socket().route("get", dst=str(destination), **request)
        except NetlinkError as exc:
            if exc.code in _UNREACHABLE:
                return None
            raise PlatformError(f"route lookup toward {destination}: {os.strerror(exc.code)}") from exc
        for msg in answer:
            if request.get("flags", 0) & RTM_F_FIB_MATCH:
                priority = msg.get("RTA_PRIORITY")
                return RouteInfo(prefsrc=None, oif=None, gateway=None, metric=int(priority or 0))
            prefsrc = msg.get("RTA_PREFSRC")
            gateway = msg.get("RTA_GATEWAY")
            oif = msg.get("RTA_OIF")
            return RouteInfo(
                prefsrc=ip_address(prefsrc) if prefsrc else None,
                oif=int(oif) if oif else None,
                gateway=ip_address(gateway) if gateway else None,
            )
        return None

    async def ipv4_interfaces(self) -> list[tuple[int, str]]:
        """(index, name) of every interface that is up, not a loopback, and holds an IPv4 address."""
        ipr = self._socket()
        try:
            with_ipv4 = {int(msg["index"]) async for msg in await ipr.addr("dump", family=socket.AF_INET)}
            found = []
            async for link in await ipr.get_links():
                index = int(link["index"])
                flags = int(link["flags"])
                if index in with_ipv4 and flags & IFF_UP and not flags & IFF_LOOPBACK:
                    found.append((index, str(link.get("IFLA_IFNAME"))))
        except NetlinkError as exc:
            raise PlatformError(f"list the IPv4 interfaces: {os.strerror(exc.code)}") from exc
        return found

    def close(self) -> None:
        ipr, self._ipr, self._loop = self._ipr, None, None
        if ipr is not None:
            ipr.close()


def _route_spec(
    index: int, network: IPv4Network | IPv6Network, metric: int, source: IPv6Network | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "family": socket.AF_INET6 if network.version == 6 else socket.AF_INET,
        "dst": str(network.network_address),
        "dst_len": network.prefixlen,
        "oif": index,
        "priority": metric,
    }
    if source is not None:
        spec.update(src=str(source.network_address), src_len=source.prefixlen)
    return spec


def _from(source: IPv6Network | None) -> str:
    return "" if source is None else f" from {source}"


def run_sync(operation: Callable[[Netlink], Awaitable[T]]) -> T:
    """Run one netlink operation from synchronous code (start-up scripts, the gateway's set-up).

    ``run_sync(lambda nl: nl.set_mtu("m6tgw0", 1472))``.  Not for use inside a running loop: await the
    :class:`Netlink` method there instead.
    """

    async def main() -> T:
        netlink = Netlink()
        try:
            return await operation(netlink)
        finally:
            netlink.close()

    return asyncio.run(main())


# /proc/sys --------------------------------------------------------------------------------------------

PROC_SYS = "/proc/sys"


def _sysctl_path(name: str) -> str:
    """``net.ipv6.conf.all.forwarding`` or ``net/ipv6/conf/all/forwarding`` → its /proc/sys file."""
    relative = name.strip("/") if "/" in name else name.replace(".", "/")
    parts = relative.split("/")
    if not relative or any(part in ("", ".", "..") for part in parts):
        raise PlatformError(f"invalid sysctl name {name!r}")
    return os.path.join(PROC_SYS, *parts)


def get_sysctl(name: str) -> str:
    path = _sysctl_path(name)
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except OSError as exc:
        raise PlatformError(f"cannot read {path}: {exc.strerror}") from exc


def set_sysctl(name: str, value: str | int) -> None:
    """Write a sysctl directly (no ``sysctl`` process); the value is per network namespace for net.*."""
    path = _sysctl_path(name)
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(f"{value}\n")
    except OSError as exc:
        code = PlatformErrorCode.of_errno(exc.errno)
        hint = "run as root" if code is PlatformErrorCode.PERMISSION_DENIED else None
        raise PlatformError(f"cannot write {path}: {exc.strerror}", hint=hint, code=code) from exc


def enable_ipv6_forwarding() -> None:
    """Turn on IPv6 forwarding on every interface (what the gateway routes by)."""
    set_sysctl("net/ipv6/conf/all/forwarding", 1)


def ipv6_disabled() -> bool:
    """True when IPv6 is off (``disable_ipv6=1``) or not even compiled in / booted (``ipv6.disable=1``)."""
    try:
        return get_sysctl("net/ipv6/conf/all/disable_ipv6") != "0"
    except PlatformError:
        return True
