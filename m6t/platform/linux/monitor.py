"""The path toward the gateway on Linux: rtnetlink change events, and ``route get`` look-ups.

Any link, IPv4 address or IPv4 route change (other than on our own TUN) is announced as a change; the
client's tracker decides when to look the path up again.  A lost event (receive buffer overrun) is
announced too, since a fresh look-up covers whatever it was.

A monitor scoped to an uplink (one tunnel per uplink, draft 2.5) asks every question through that
interface, as the tunnel's socket bound to it (``SO_BINDTODEVICE``) sends: look-ups carry ``RTA_OIF``
(:meth:`Netlink.route_get <m6t.platform.linux.netlink.Netlink.route_get>`), and the probe connects a socket
bound to the interface.  Because the kernel routes such a socket "on-link" when no route goes through its
interface, the probe first asks the kernel, in one synchronous ``RTM_GETROUTE`` with ``RTM_F_FIB_MATCH``,
whether a route does (:func:`route_request`, :func:`route_reply`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import struct
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass
from ipaddress import IPv4Address

from m6t.platform.base import ChangeCallback
from m6t.platform.monitoring import ProbedMonitor, connected_udp_source
from m6t.protocol.values import Attachment

assert sys.platform == "linux"

# Sibling Linux modules come after the assertion, which hides their contents from mypy on other platforms.
from m6t.platform.linux.netlink import Netlink, RouteInfo  # noqa: E402

NETLINK_ROUTE = 0
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTM_NEWLINK, RTM_DELLINK = 16, 17
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
RTM_F_FIB_MATCH = 0x2000
IFLA_IFNAME = 3
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6

_NLMSGHDR = struct.Struct("=IHHII")
_IFINDEX = struct.Struct("=i")
_RTATTR = struct.Struct("=HH")
_IFINFOMSG_SIZE = 16
_IFADDRMSG_SIZE = 8
_RTMSG = struct.Struct("=BBBBBBBBI")
"""struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags."""
_RTMSG_SIZE = _RTMSG.size
_ERRNO = struct.Struct("=i")
_REPLY_TIMEOUT = 1.0

_MAX_READS = 64
_RCVBUF = 1 << 20


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attributes(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(type, payload offset, payload length) of each rtattr in ``data[start:end]``."""
    found = []
    while start + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, start)
        if length < _RTATTR.size or start + length > end:
            break
        found.append((kind & 0x3FFF, start + _RTATTR.size, length - _RTATTR.size))
        start += _align(length)
    return found


def event_interfaces(data: bytes) -> list[tuple[int | None, str | None]]:
    """(ifindex, ifname) concerned by each rtnetlink message in ``data``; ``(None, None)`` if unknown."""
    found: list[tuple[int | None, str | None]] = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            break
        body = offset + _NLMSGHDR.size
        end = offset + length
        if kind in (RTM_NEWLINK, RTM_DELLINK) and body + _IFINFOMSG_SIZE <= end:
            name = None
            for attr, start, size in _attributes(data, body + _IFINFOMSG_SIZE, end):
                if attr == IFLA_IFNAME:
                    name = data[start : start + size].split(b"\0", 1)[0].decode("utf-8", "replace")
            found.append((_IFINDEX.unpack_from(data, body + 4)[0], name))
        elif kind in (RTM_NEWADDR, RTM_DELADDR) and body + _IFADDRMSG_SIZE <= end:
            found.append((_IFINDEX.unpack_from(data, body + 4)[0], None))
        elif kind in (RTM_NEWROUTE, RTM_DELROUTE) and body + _RTMSG_SIZE <= end:
            oif = None
            for attr, start, size in _attributes(data, body + _RTMSG_SIZE, end):
                if attr == RTA_OIF and size >= 4:
                    oif = _IFINDEX.unpack_from(data, start)[0]
            found.append((oif, None))
        else:
            found.append((None, None))
        offset += _align(length)
    return found


def _rtattr(kind: int, payload: bytes) -> bytes:
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload.ljust(_align(length) - _RTATTR.size, b"\0")


def route_request(destination: IPv4Address, oif: int, *, seq: int, flags: int = RTM_F_FIB_MATCH) -> bytes:
    """An ``RTM_GETROUTE`` toward ``destination`` through interface ``oif`` (``ip route get ... oif``);
    ``RTM_F_FIB_MATCH`` by default: the kernel answers with the route that matched, or EHOSTUNREACH."""
    body = _RTMSG.pack(socket.AF_INET, 32, 0, 0, 0, 0, 0, 0, flags)
    body += _rtattr(RTA_DST, destination.packed) + _rtattr(RTA_OIF, _IFINDEX.pack(oif))
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_GETROUTE, NLM_F_REQUEST, seq, 0) + body


@dataclass(frozen=True, slots=True)
class RouteReply:
    """What an ``RTM_NEWROUTE`` answering :func:`route_request` says (any field the kernel left out is None)."""

    oif: int | None
    gateway: IPv4Address | None
    metric: int | None


def route_reply(data: bytes, seq: int) -> RouteReply | int | None:
    """The answer to request ``seq`` in ``data``: a :class:`RouteReply`, the errno the kernel refused it with
    (EHOSTUNREACH: no route), or ``None`` when ``data`` holds no well-formed answer to it."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, msg_seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            return None
        body, end = offset + _NLMSGHDR.size, offset + length
        offset += _align(length)
        if msg_seq != seq:
            continue
        if kind == NLMSG_ERROR and body + _ERRNO.size <= end:
            code = -int(_ERRNO.unpack_from(data, body)[0])
            if code > 0:
                return code
        elif kind == RTM_NEWROUTE and body + _RTMSG_SIZE <= end:
            oif = gateway = metric = None
            for attr, start, size in _attributes(data, body + _RTMSG_SIZE, end):
                if attr == RTA_OIF and size >= 4:
                    oif = _IFINDEX.unpack_from(data, start)[0]
                elif attr == RTA_GATEWAY and size == 4:
                    gateway = IPv4Address(data[start : start + 4])
                elif attr == RTA_PRIORITY and size >= 4:
                    metric = struct.unpack_from("=I", data, start)[0]
            return RouteReply(oif=oif, gateway=gateway, metric=metric)
    return None


def route_through(destination: IPv4Address, oif: int) -> RouteReply | None:
    """The route toward ``destination`` through interface ``oif``, asked synchronously (rtnetlink answers
    a request before the ``send`` returns); ``None`` when there is none."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE) as sock:
        sock.settimeout(_REPLY_TIMEOUT)
        sock.bind((0, 0))
        seq = 1
        sock.send(route_request(destination, oif, seq=seq))
        while True:
            answer = route_reply(sock.recv(65536), seq)
            if answer is not None:
                return answer if isinstance(answer, RouteReply) else None


def bound_to(ifname: str) -> Callable[[socket.socket], None]:
    """Prepares a socket to use interface ``ifname`` only: ``SO_BINDTODEVICE``, socket(7): "Bind this socket
    to a particular device ... only packets received from that particular interface are processed by the
    socket", and what it sends leaves through that interface."""

    def bind(sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())

    return bind


class LinuxConnectivityMonitor(ProbedMonitor):
    """Announces rtnetlink changes (not on our TUN) and looks the path toward ``gateway`` up (through
    ``uplink`` only, when it is set)."""

    def __init__(self, gateway: IPv4Address, ignore_interface: str, *, uplink: str | None = None) -> None:
        super().__init__(gateway, ignore_interface, uplink)
        self._netlink = Netlink()
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_change: ChangeCallback | None = None
        self._ignored_index: int | None = None

    async def start(self, on_change: ChangeCallback) -> None:
        if self._sock is not None:
            raise RuntimeError("monitor already started")
        loop = asyncio.get_running_loop()
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, NETLINK_ROUTE
        )
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
            sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._loop = loop
        self._on_change = on_change
        loop.add_reader(sock.fileno(), self._on_readable)

    async def stop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._on_change = None
        self._netlink.close()

    async def lookup(self) -> Attachment | None:
        if self.uplink is not None:
            index = _index_of(self.uplink)
            if index is None:
                return None
            return _attachment(await self._netlink.route_get(self.gateway, oif=index), self.uplink)
        info = await self._netlink.route_get(self.gateway)
        if info is None or info.oif is None or not isinstance(info.prefsrc, IPv4Address):
            return None
        try:
            name = socket.if_indextoname(info.oif)
        except OSError:
            return None
        router = info.gateway if isinstance(info.gateway, IPv4Address) else None
        return Attachment(local_ipv4=info.prefsrc, interface=name, router=router)

    def probe(self) -> Attachment | None:
        uplink = self.uplink
        if uplink is None:
            return super().probe()
        try:
            if route_through(self.gateway, socket.if_nametoindex(uplink)) is None:
                return None
            local = IPv4Address(connected_udp_source(str(self.gateway), prepare=bound_to(uplink)))
        except (OSError, ValueError):
            return None
        return None if local.is_unspecified else Attachment(local_ipv4=local, interface=uplink, router=None)

    async def uplinks(self, *, ignore: Collection[str] = ()) -> tuple[Attachment, ...]:
        """Every interface that is up with an IPv4 address and answers a look-up scoped to it (an
        ``RTA_OIF`` ``RTM_GETROUTE``) with a route of its own; the unscoped answer's interface first, then
        by route metric and name."""
        skipped = {self.ignore_interface, *ignore}
        preferred = await self._netlink.route_get(self.gateway)
        ranked: list[tuple[bool, int, str, Attachment]] = []
        for index, name in await self._netlink.ipv4_interfaces():
            if name in skipped:
                continue
            info = await self._netlink.route_get(self.gateway, oif=index)
            attachment = _attachment(info, name)
            if info is not None and attachment is not None:
                first = preferred is not None and preferred.oif == index
                ranked.append((not first, info.metric or 0, name, attachment))
        return tuple(attachment for *_, attachment in sorted(ranked, key=lambda entry: entry[:3]))

    # Events ------------------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        relevant = False
        for _ in range(_MAX_READS):
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    # Events were lost: whatever they were, a fresh lookup covers them.
                    relevant = True
                    continue
                raise
            if not relevant and self._concerns_us(data):
                relevant = True
        if relevant and self._on_change is not None:
            self._on_change()

    def _concerns_us(self, data: bytes) -> bool:
        # Gone or not yet there: the last index seen still recognizes the interface's RTM_DELLINK.
        with contextlib.suppress(OSError):
            self._ignored_index = socket.if_nametoindex(self.ignore_interface)
        for index, name in event_interfaces(data):
            if name == self.ignore_interface:
                continue
            if index is not None and index == self._ignored_index:
                continue
            return True
        return False


def _index_of(ifname: str) -> int | None:
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        return None


def _attachment(info: RouteInfo | None, name: str) -> Attachment | None:
    if info is None or not isinstance(info.prefsrc, IPv4Address) or info.prefsrc.is_unspecified:
        return None
    router = info.gateway if isinstance(info.gateway, IPv4Address) else None
    return Attachment(local_ipv4=info.prefsrc, interface=name, router=router)
