"""The path toward the gateway on Linux: rtnetlink change events, and ``route get`` look-ups.

Any link, IPv4 address or IPv4 route change (other than on our own TUN) is announced as a change; the
client's tracker decides when to look the path up again.  A lost event (receive buffer overrun) is
announced too, since a fresh look-up covers whatever it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import struct
import sys
from ipaddress import IPv4Address

from m6t.platform.base import ChangeCallback
from m6t.platform.monitoring import ProbedMonitor
from m6t.protocol.values import Attachment

assert sys.platform == "linux"

# Sibling Linux modules come after the assertion, which hides their contents from mypy on other platforms.
from m6t.platform.linux.netlink import Netlink  # noqa: E402

NETLINK_ROUTE = 0
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTM_NEWLINK, RTM_DELLINK = 16, 17
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
IFLA_IFNAME = 3
RTA_OIF = 4

_NLMSGHDR = struct.Struct("=IHHII")
_IFINDEX = struct.Struct("=i")
_RTATTR = struct.Struct("=HH")
_IFINFOMSG_SIZE = 16
_IFADDRMSG_SIZE = 8
_RTMSG_SIZE = 12

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


class LinuxConnectivityMonitor(ProbedMonitor):
    """Announces rtnetlink changes (not on our TUN) and looks the path toward ``gateway`` up."""

    def __init__(self, gateway: IPv4Address, ignore_interface: str) -> None:
        super().__init__(gateway, ignore_interface)
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
        info = await self._netlink.route_get(self.gateway)
        if info is None or info.oif is None or not isinstance(info.prefsrc, IPv4Address):
            return None
        try:
            name = socket.if_indextoname(info.oif)
        except OSError:
            return None
        router = info.gateway if isinstance(info.gateway, IPv4Address) else None
        return Attachment(local_ipv4=info.prefsrc, interface=name, router=router)

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
