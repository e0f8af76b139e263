"""The path toward the gateway on macOS: routing-socket change messages, and ``RTM_GET`` look-ups.

Any IPv4 address or route change, any interface state change (other than on our own utun) is announced
as a change; the client's tracker decides when to look the path up again (an ``RTM_GET`` with
``RTA_IFP``, i.e. ``route get``).  A message the routing socket dropped when its buffer was full is
covered by the tracker's backstop probe.

Messages that never change the path toward the gateway are skipped: other families (our own IPv6 routes
and addresses included), ARP and cloned host-route churn (``RTF_LLINFO``, ``RTF_WASCLONED``), and the
``RTM_GET`` traffic that every lookup -- ours too -- broadcasts to all routing sockets.

A monitor scoped to an uplink (one tunnel per uplink, draft 2.5) looks the path up scoped to that
interface (``RTF_IFSCOPE`` ``RTM_GET``, :func:`routing.lookup <m6t.platform.darwin.routing.lookup>`), and
probes with a socket bound to it (``IP_BOUND_IF``), as the tunnel's own socket is.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Collection
from ipaddress import IPv4Address

from m6t.platform.base import ChangeCallback
from m6t.platform.darwin import routing
from m6t.platform.darwin.routing import (
    RTAX_DST,
    RTAX_GATEWAY,
    RTAX_IFA,
    RTAX_IFP,
    RTF_BLACKHOLE,
    RTF_GATEWAY,
    RTF_LLINFO,
    RTF_REJECT,
    RTF_WASCLONED,
    RTM_ADD,
    RTM_CHANGE,
    RTM_DELADDR,
    RTM_DELETE,
    RTM_IFINFO,
    RTM_NEWADDR,
    RTM_REDIRECT,
    RoutingMessage,
    RoutingMessageError,
)
from m6t.platform.darwin.syscalls import AF_INET, AF_UNSPEC, PF_ROUTE, SO_RCVBUF, SOCK_RAW, SOL_SOCKET, Syscalls
from m6t.platform.monitoring import PROBE_PORT, ProbedMonitor
from m6t.protocol.values import Attachment

log = logging.getLogger(__name__)

_MAX_READS = 64
_RCVBUF = 1 << 20

_ROUTE_EVENTS = frozenset({RTM_ADD, RTM_DELETE, RTM_CHANGE, RTM_REDIRECT})
_ADDRESS_EVENTS = frozenset({RTM_NEWADDR, RTM_DELADDR})
_CACHE_FLAGS = RTF_LLINFO | RTF_WASCLONED


def event_interface(message: RoutingMessage) -> int | None:
    """The interface index a message is about, if it says."""
    if message.index:
        return message.index
    for rtax in (RTAX_IFP, RTAX_GATEWAY):
        link = message.link(rtax)
        if link is not None and link[0]:
            return link[0]
    return None


def concerns_ipv4(message: RoutingMessage, ignored_index: int | None) -> bool:
    """Whether ``message`` may change the IPv4 path toward the gateway (and is not about ``ignored_index``)."""
    kind = message.type
    if kind == RTM_IFINFO:
        family: int | None = AF_INET
    elif kind in _ADDRESS_EVENTS:
        family = message.family(RTAX_IFA)
    elif kind in _ROUTE_EVENTS:
        if message.flags & _CACHE_FLAGS:
            return False
        family = message.family(RTAX_DST)
    else:
        return False
    if family not in (AF_INET, None, AF_UNSPEC):
        return False
    index = event_interface(message)
    return not (ignored_index is not None and index == ignored_index)


class DarwinConnectivityMonitor(ProbedMonitor):
    """Announces routing-socket changes (not on our utun) and looks the path toward ``gateway`` up."""

    def __init__(
        self, gateway: IPv4Address, ignore_interface: str, *, syscalls: Syscalls, uplink: str | None = None
    ) -> None:
        super().__init__(gateway, ignore_interface, uplink)
        self.events = 0
        """Routing messages that concerned us (announced as changes)."""
        self._sys = syscalls
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_change: ChangeCallback | None = None
        self._ignored_index: int | None = None

    async def start(self, on_change: ChangeCallback) -> None:
        if self._fd >= 0:
            raise RuntimeError("monitor already started")
        loop = asyncio.get_running_loop()
        fd = self._sys.socket(PF_ROUTE, SOCK_RAW, AF_UNSPEC)
        try:
            self._sys.set_nonblocking(fd)
            with contextlib.suppress(OSError):
                # A bigger buffer only makes drops during a storm rarer; the default still works.
                self._sys.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, _RCVBUF)
        except BaseException:
            self._sys.close(fd)
            raise
        self._fd = fd
        self._loop = loop
        self._on_change = on_change
        loop.add_reader(fd, self._on_readable)

    async def stop(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            if self._loop is not None:
                self._loop.remove_reader(fd)
            self._sys.close(fd)
        self._on_change = None

    async def lookup(self) -> Attachment | None:
        if self.uplink is None:
            return await self._path()
        index = self._index_of(self.uplink)
        return await self._path(index) if index is not None else None

    async def uplinks(self, *, ignore: Collection[str] = ()) -> tuple[Attachment, ...]:
        """Every interface that is up with an IPv4 address and answers a look-up scoped to it: the unscoped
        answer's interface first, then by name (the BSD table has no metric to rank the others by)."""
        skipped = {self.ignore_interface, *ignore}
        preferred = await self._path()
        found: list[Attachment] = []
        for name in self._sys.ipv4_interfaces():
            index = self._index_of(name)
            if name in skipped or index is None:
                continue
            path = await self._path(index)
            if path is not None:
                found.append(path)
        first = preferred.interface if preferred is not None else None
        return tuple(sorted(found, key=lambda path: (path.interface != first, path.interface)))

    def _index_of(self, name: str) -> int | None:
        try:
            return self._sys.if_nametoindex(name)
        except (OSError, ValueError):
            return None

    async def _path(self, scope: int = 0) -> Attachment | None:
        info = await routing.lookup(self._sys, self.gateway, scope=scope)
        if info is None or info.flags & (RTF_REJECT | RTF_BLACKHOLE):
            return None
        if scope and info.index != scope:
            return None  # XNU never answers a scoped look-up through another interface; a stand-in might
        if not isinstance(info.local, IPv4Address) or info.local.is_unspecified:
            return None
        name = info.interface
        if name is None and info.index:
            try:
                name = self._sys.if_indextoname(info.index)
            except OSError:
                return None
        if name is None or name == self.ignore_interface:
            # No egress interface, or a loop through our own tunnel: no usable IPv4 path.
            return None
        router = info.gateway if info.flags & RTF_GATEWAY and isinstance(info.gateway, IPv4Address) else None
        return Attachment(local_ipv4=info.local, interface=name, router=router)

    # The probe's questions go through the syscall layer, which the tests replace with a fake kernel.

    def _source_toward(self, address: str) -> str:
        if self.uplink is None:
            return self._sys.source_address_toward(address, PROBE_PORT)
        index = self._index_of(self.uplink)
        if index is None:
            raise OSError(errno.ENXIO, f"no interface named {self.uplink}")
        return self._sys.source_address_toward(address, PROBE_PORT, index)

    def _holding(self, local: IPv4Address) -> Attachment | None:
        try:
            name = self._sys.interface_with_address(str(local))
        except OSError:
            return None
        if name is None or (self.uplink is not None and name != self.uplink):
            return None
        return Attachment(local_ipv4=local, interface=name, router=None)

    # Events ------------------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        fd = self._fd
        if fd < 0:
            return
        relevant = False
        # Gone or not yet there: the last index seen still recognizes the utun's final messages.
        with contextlib.suppress(OSError):
            self._ignored_index = self._sys.if_nametoindex(self.ignore_interface)
        for _ in range(_MAX_READS):
            try:
                data = self._sys.read(fd, routing.READ_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    relevant = True
                    continue
                raise
            if self._concerns_us(data):
                relevant = True
        if relevant and self._on_change is not None:
            self._on_change()

    def _concerns_us(self, data: bytes) -> bool:
        try:
            messages = routing.parse_messages(data)
        except RoutingMessageError as exc:
            # Not understood: a fresh lookup is cheap and always right.
            log.debug("unparsable routing message (%s); re-evaluating", exc)
            return True
        found = False
        for message in messages:
            if concerns_ipv4(message, self._ignored_index):
                self.events += 1
                found = True
        return found
