"""The emulated PF_ROUTE routing socket: requests applied to the Linux routing table, changes announced.

What it follows (``man 4 route``; XNU bsd/net/route.h and bsd/net/rtsock.c):

* "A user process ... sends a message by writing to the socket ... the kernel will reply with a message
  ... indicating the action taken": ``route_output`` checks ``rtm_msglen`` against the write and
  ``rtm_version`` (EINVAL, EPROTONOSUPPORT), stamps ``rtm_pid`` with the sender's pid, carries the request
  out, and queues the message -- completed for RTM_GET, ``RTF_DONE`` on success, ``rtm_errno`` on failure --
  to *every* routing socket, the sender's included, before ``write`` returns the error, if any.  An
  ``RTM_GET`` is therefore answered on the very socket that asked, among whatever else is queued there.
* Sockaddrs follow the header in RTAX order, each padded with ``ROUNDUP32`` (:mod:`.darwin_abi`); the
  kernel's netmasks come trimmed after their last non-zero byte, with a zero family byte.
* Without a netmask a lookup takes the best match (``rn_match``), with one the exact key and mask
  (``rn_lookup``); ``RTM_ADD`` of a key and mask already present fails with EEXIST whatever its interface (no
  metric: one route per key and mask), ``RTM_DELETE``/``RTM_GET`` of an absent one with ESRCH.
* Kernel changes -- addresses (RTM_NEWADDR/RTM_DELADDR, ``ifa_msghdr``), links (RTM_IFINFO, ``if_msghdr``),
  routes (RTM_ADD/RTM_DELETE) -- are broadcast to every routing socket; here they come from real rtnetlink
  events of the namespace.  A full socket buffer drops the message silently, as ``raw_input`` does.

Routes go into the Linux main table with protocol :data:`EMULATED_PROTO`; their rtnetlink events are not
announced again, the socket's own copy of the request having announced them already.  ``RTF_IFSCOPE``
routes (scoped to ``rtm_index``) go into a table of that interface with an ``oif`` rule, Linux's nearest
equivalent: sockets bound to the interface use them, others do not see them.  A scoped ``RTM_GET`` answers
from that table and from the main table's routes through the interface (:meth:`RoutingSockets._best_match`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import threading
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

from m6t.lab.emulation.darwin_abi import (
    AF_INET,
    AF_INET6,
    AF_LINK,
    IFF_UP,
    IFT_ETHER,
    IFT_LOOP,
    IFT_OTHER,
    RTA_IFA,
    RTA_IFP,
    RTAX_BRD,
    RTAX_DST,
    RTAX_GATEWAY,
    RTAX_IFA,
    RTAX_IFP,
    RTAX_NETMASK,
    RTF_DONE,
    RTF_GATEWAY,
    RTF_HOST,
    RTF_IFSCOPE,
    RTF_STATIC,
    RTF_UP,
    RTM_ADD,
    RTM_CHANGE,
    RTM_DELADDR,
    RTM_DELETE,
    RTM_GET,
    RTM_IFINFO,
    RTM_NEWADDR,
    RTM_VERSION,
    IfaMsghdr,
    IfMsghdr,
    RtMsghdr,
    SockaddrDl,
    assemble,
    kernel_mask,
    link_sockaddr,
    oserror,
    prefixlen_of,
    sockaddr,
    sockaddr_ip,
    xaddrs,
)
from m6t.lab.emulation.darwin_host import Netlink, darwin_flags

EMULATED_PROTO = 77
"""rtm_protocol of the routes the emulated routing socket installs (any value Linux does not use itself)."""
MAIN_TABLE = 254
SCOPED_TABLE_BASE = 7000
"""RTF_IFSCOPE routes of interface index i live in Linux table SCOPED_TABLE_BASE + i."""
RTN_UNICAST = 1
RTM_F_CLONED = 0x200
_LINUX_AF = {AF_INET: socket.AF_INET, AF_INET6: socket.AF_INET6}
_STATIC_PROTOS = frozenset({3, 4, EMULATED_PROTO})
"""boot (``ip route`` without ``proto``), static, ours: what macOS would have as RTF_STATIC (route(8), configd)."""
_ARPHRD_ETHER, _ARPHRD_LOOPBACK = 1, 772

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address


@dataclass(frozen=True, slots=True)
class LinkInfo:
    name: str
    index: int
    kind: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One Linux route, as far as the BSD routing table would see it."""

    network: Network
    oif: int
    gateway: Address | None
    proto: int
    priority: int
    table: int

    @property
    def flags(self) -> int:
        flags = RTF_UP | (RTF_GATEWAY if self.gateway is not None else 0)
        flags |= RTF_STATIC if self.proto in _STATIC_PROTOS else 0
        flags |= RTF_HOST if self.network.prefixlen == self.network.max_prefixlen else 0
        return flags | (RTF_IFSCOPE if self.table != MAIN_TABLE else 0)


def _table(message: Any) -> int:
    return int(message.get_attr("RTA_TABLE") or message["table"])


def _entry(message: Any) -> Entry | None:
    family = message["family"]
    if family not in (socket.AF_INET, socket.AF_INET6) or message["type"] != RTN_UNICAST:
        return None
    if message["flags"] & RTM_F_CLONED:
        return None
    default = "0.0.0.0" if family == socket.AF_INET else "::"
    dst = message.get_attr("RTA_DST") or default
    network: Network = (IPv4Network if family == socket.AF_INET else IPv6Network)((dst, message["dst_len"]))
    gateway = message.get_attr("RTA_GATEWAY")
    return Entry(
        network=network,
        oif=int(message.get_attr("RTA_OIF") or 0),
        gateway=(IPv4Address if family == socket.AF_INET else IPv6Address)(gateway) if gateway else None,
        proto=int(message["proto"]),
        priority=int(message.get_attr("RTA_PRIORITY") or 0),
        table=_table(message),
    )


def _route_sockaddrs(entry: Entry, link: LinkInfo | None) -> dict[int, bytes]:
    """A route's destination, gateway (the next hop, or the interface's sockaddr_dl) and trimmed netmask
    (none for a host route)."""
    sockaddrs = {RTAX_DST: sockaddr(entry.network.network_address)}
    if entry.gateway is not None:
        sockaddrs[RTAX_GATEWAY] = sockaddr(entry.gateway)
    elif link is not None:
        sockaddrs[RTAX_GATEWAY] = link_sockaddr(link)
    if entry.network.prefixlen != entry.network.max_prefixlen:
        sockaddrs[RTAX_NETMASK] = kernel_mask(entry.network)
    return sockaddrs


class RoutingSockets:
    """Every open emulated PF_ROUTE socket (an AF_UNIX datagram pair: the caller's end and the kernel's)."""

    def __init__(self, netlink: Netlink) -> None:
        self._netlink = netlink
        self._lock = threading.Lock()
        self._kernel_ends: dict[int, socket.socket] = {}
        self._user_ends: dict[int, socket.socket] = {}
        self._links: dict[int, LinkInfo] = {}
        self.dropped = 0
        """Messages a full socket buffer did not take."""

    # -- sockets

    def open(self) -> int:
        user, kernel = socket.socketpair(type=socket.SOCK_DGRAM)
        kernel.setblocking(False)
        fd = user.fileno()
        with self._lock:
            self._kernel_ends[fd] = kernel
            self._user_ends[fd] = user
        return fd

    def owns(self, fd: int) -> bool:
        return fd in self._user_ends

    def user_end(self, fd: int) -> socket.socket:
        return self._user_ends[fd]

    def close(self, fd: int) -> None:
        with self._lock:
            kernel = self._kernel_ends.pop(fd)
            user = self._user_ends.pop(fd)
        kernel.close()
        user.close()

    def broadcast(self, data: bytes) -> None:
        with self._lock:
            ends = list(self._kernel_ends.values())
        for end in ends:
            try:
                end.send(data)
            except (BlockingIOError, ConnectionError):
                self.dropped += 1

    # -- route_output

    def output(self, data: bytes) -> int:
        """A message written to a routing socket: carried out, then copied to every routing socket."""
        if len(data) < ctypes.sizeof(RtMsghdr) or struct.unpack_from("=H", data)[0] != len(data):
            raise oserror(errno.EINVAL)
        rtm = RtMsghdr.from_buffer_copy(data)
        if rtm.rtm_version != RTM_VERSION:
            raise oserror(errno.EPROTONOSUPPORT)
        rtm.rtm_pid = os.getpid()
        error = 0
        reply: bytes | None = None
        try:
            reply = self._request(rtm, xaddrs(data, ctypes.sizeof(RtMsghdr), rtm.rtm_addrs))
        except OSError as exc:
            error = exc.errno or errno.EIO
        if reply is None:
            if error:
                rtm.rtm_errno = error
            else:
                rtm.rtm_flags |= RTF_DONE
            reply = bytes(rtm) + data[ctypes.sizeof(RtMsghdr) :]
        self.broadcast(reply)
        if error:
            raise oserror(error)
        return len(data)

    def _request(self, rtm: RtMsghdr, sockaddrs: dict[int, bytes]) -> bytes | None:
        dst_sa = sockaddrs.get(RTAX_DST)
        if dst_sa is None or len(dst_sa) < 2:
            raise oserror(errno.EINVAL)
        destination = sockaddr_ip(dst_sa)
        if destination is None:
            raise oserror(errno.EAFNOSUPPORT)
        family = dst_sa[1]
        size = 4 if family == AF_INET else 16
        scope = rtm.rtm_index if rtm.rtm_flags & RTF_IFSCOPE else 0
        mask_sa = sockaddrs.get(RTAX_NETMASK)
        prefixlen = size * 8
        if mask_sa is not None and not rtm.rtm_flags & RTF_HOST:
            found = prefixlen_of(mask_sa[(4 if family == AF_INET else 8) :], size)
            if found is None:
                raise oserror(errno.EINVAL)
            prefixlen = found
        network: Network = (IPv4Network if family == AF_INET else IPv6Network)((destination, prefixlen), strict=False)
        table = SCOPED_TABLE_BASE + scope if scope else MAIN_TABLE
        kind = rtm.rtm_type
        if kind == RTM_ADD:
            self._add(network, sockaddrs.get(RTAX_GATEWAY), table, scope)
            return None
        if kind == RTM_DELETE:
            doomed = self._exact(network, table)
            if doomed is None:
                raise oserror(errno.ESRCH)
            self._netlink.call("route", "del", **self._spec(doomed))
            return None
        if kind in (RTM_GET, RTM_CHANGE):
            exact = mask_sa is not None or rtm.rtm_flags & RTF_HOST
            entry = self._exact(network, table) if exact else self._best_match(destination, table)
            if entry is None:
                raise oserror(errno.ESRCH)
            if kind == RTM_CHANGE:
                self._change(entry, sockaddrs.get(RTAX_GATEWAY))
                return None
            return self._get_reply(rtm, entry, destination, bool(rtm.rtm_addrs & (RTA_IFP | RTA_IFA)))
        raise oserror(errno.EOPNOTSUPP)

    def _add(self, network: Network, gateway_sa: bytes | None, table: int, scope: int) -> None:
        if gateway_sa is None:
            raise oserror(errno.EINVAL)
        if self._exact(network, table) is not None:
            raise oserror(errno.EEXIST)
        spec = {"dst": str(network.network_address), "dst_len": network.prefixlen, "table": table}
        spec |= self._next_hop(gateway_sa)
        if scope:
            self._scope_rule(network, scope, table)
        self._netlink.call("route", "add", proto=EMULATED_PROTO, **spec)

    def _change(self, entry: Entry, gateway_sa: bytes | None) -> None:
        if gateway_sa is None:
            return
        spec = self._spec(entry) | {"oif": None, "gateway": None}
        spec |= self._next_hop(gateway_sa)
        self._netlink.call("route", "replace", proto=entry.proto, **{k: v for k, v in spec.items() if v is not None})

    def _next_hop(self, sa: bytes) -> dict[str, Any]:
        if len(sa) >= 2 and sa[1] == AF_LINK:
            sdl = SockaddrDl.from_buffer_copy(sa.ljust(ctypes.sizeof(SockaddrDl), b"\0"))
            if self.link(int(sdl.sdl_index)) is None:
                raise oserror(errno.ENETUNREACH)
            return {"oif": int(sdl.sdl_index)}
        gateway = sockaddr_ip(sa)
        if gateway is None:
            raise oserror(errno.EINVAL)
        return {"gateway": str(gateway)}

    def _scope_rule(self, network: Network, scope: int, table: int) -> None:
        link = self.link(scope)
        if link is None:
            raise oserror(errno.ENXIO)
        family = socket.AF_INET if network.version == 4 else socket.AF_INET6
        rules = self._netlink.call("get_rules", family=family)
        if not any(rule.get_attr("FRA_TABLE") == table for rule in rules):
            self._netlink.call("rule", "add", family=family, table=table, oifname=link.name, priority=table)

    @staticmethod
    def _spec(entry: Entry) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "dst": str(entry.network.network_address),
            "dst_len": entry.network.prefixlen,
            "table": entry.table,
            "priority": entry.priority,
        }
        if entry.oif:
            spec["oif"] = entry.oif
        if entry.gateway is not None:
            spec["gateway"] = str(entry.gateway)
        return spec

    # -- the table, read

    def _entries(self, version: int, table: int) -> list[Entry]:
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        found = (_entry(message) for message in self._netlink.call("get_routes", family=family))
        return [entry for entry in found if entry is not None and entry.table == table]

    def _exact(self, network: Network, table: int) -> Entry | None:
        return next((e for e in self._entries(network.version, table) if e.network == network), None)

    def _best_match(self, address: Address, table: int) -> Entry | None:
        candidates = [e for e in self._entries(address.version, table) if address in e.network]
        if table != MAIN_TABLE:
            # A scoped look-up (rt_lookup_common) answers with a route through the scope's interface only:
            # the scoped routes (ours, and those configd installs for every non-primary service, which a
            # Linux table holds as main-table routes through that interface), or an unscoped match on that
            # interface; never another interface's ("Wrong interface ... start again from scratch").
            scope = table - SCOPED_TABLE_BASE
            candidates += [
                e for e in self._entries(address.version, MAIN_TABLE) if address in e.network and e.oif == scope
            ]
        return max(candidates, key=lambda e: (e.network.prefixlen, -e.priority)) if candidates else None

    def _get_reply(self, rtm: RtMsghdr, entry: Entry, destination: Address, want_interface: bool) -> bytes:
        link = self.link(entry.oif)
        sockaddrs = _route_sockaddrs(entry, link)
        if want_interface and link is not None:
            sockaddrs[RTAX_IFP] = link_sockaddr(link)
            local = self._source(destination, entry.oif)
            sockaddrs[RTAX_IFA] = sockaddr(local) if local is not None else link_sockaddr(link)
        reply = RtMsghdr.from_buffer_copy(bytes(rtm))
        reply.rtm_index = entry.oif
        reply.rtm_flags = entry.flags | RTF_DONE
        return assemble(reply, sockaddrs)

    def _source(self, destination: Address, oif: int) -> Address | None:
        """The route's interface address (RTA_IFA): the source Linux would choose toward ``destination``."""
        try:
            answer = self._netlink.call("route", "get", dst=str(destination))
        except OSError:
            answer = []
        for message in answer:
            prefsrc = message.get_attr("RTA_PREFSRC")
            if prefsrc and message.get_attr("RTA_OIF") == oif:
                return IPv4Address(prefsrc) if destination.version == 4 else IPv6Address(prefsrc)
        family = socket.AF_INET if destination.version == 4 else socket.AF_INET6
        for message in self._netlink.call("get_addr", family=family, index=oif):
            local = message.get_attr("IFA_LOCAL") or message.get_attr("IFA_ADDRESS")
            if local:
                return IPv4Address(local) if destination.version == 4 else IPv6Address(local)
        return None

    # -- links

    def link(self, index: int) -> LinkInfo | None:
        cached = self._links.get(index)
        if cached is not None:
            return cached
        try:
            message = self._netlink.link(index)
        except OSError:
            return None
        return self._remember(message)

    def _remember(self, message: Any) -> LinkInfo:
        arphrd = message["ifi_type"]
        kind = IFT_ETHER if arphrd == _ARPHRD_ETHER else IFT_LOOP if arphrd == _ARPHRD_LOOPBACK else IFT_OTHER
        info = LinkInfo(name=str(message.get_attr("IFLA_IFNAME") or ""), index=int(message["index"]), kind=kind)
        self._links[info.index] = info
        return info

    # -- kernel changes, from rtnetlink events (on the events thread)

    def announce(self, message: Any) -> None:
        event = message.get("event")
        data: bytes | None = None
        if event in ("RTM_NEWLINK", "RTM_DELLINK"):
            data = self._ifinfo(message, gone=event == "RTM_DELLINK")
        elif event in ("RTM_NEWADDR", "RTM_DELADDR"):
            data = self._addr(message, RTM_NEWADDR if event == "RTM_NEWADDR" else RTM_DELADDR)
        elif event in ("RTM_NEWROUTE", "RTM_DELROUTE"):
            data = self._route(message, RTM_ADD if event == "RTM_NEWROUTE" else RTM_DELETE)
        if data is not None:
            self.broadcast(data)

    def _ifinfo(self, message: Any, *, gone: bool) -> bytes:
        link = self._remember(message)
        if gone:
            self._links.pop(link.index, None)
        ifm = IfMsghdr(ifm_version=RTM_VERSION, ifm_type=RTM_IFINFO, ifm_index=link.index)
        flags = darwin_flags(int(message["flags"]))
        ifm.ifm_flags = flags & ~IFF_UP if gone else flags
        ifm.ifm_data.mtu = int(message.get_attr("IFLA_MTU") or 0)
        ifm.ifm_data.type = link.kind
        return assemble(ifm, {})

    def _addr(self, message: Any, kind: int) -> bytes | None:
        family = message["family"]
        if family not in (socket.AF_INET, socket.AF_INET6):
            return None
        raw = message.get_attr("IFA_LOCAL") or message.get_attr("IFA_ADDRESS")
        if not raw:
            return None
        address: Address = IPv4Address(raw) if family == socket.AF_INET else IPv6Address(raw)
        network: Network = (IPv4Network if family == socket.AF_INET else IPv6Network)(
            (address, message["prefixlen"]), strict=False
        )
        index = int(message["index"])
        link = self.link(index) or LinkInfo(name="", index=index, kind=IFT_OTHER)
        ifam = IfaMsghdr(ifam_version=RTM_VERSION, ifam_type=kind, ifam_index=index)
        sockaddrs = {RTAX_NETMASK: kernel_mask(network), RTAX_IFP: link_sockaddr(link), RTAX_IFA: sockaddr(address)}
        broadcast = message.get_attr("IFA_BROADCAST")
        if broadcast:
            sockaddrs[RTAX_BRD] = sockaddr(IPv4Address(broadcast))
        return assemble(ifam, sockaddrs)

    def _route(self, message: Any, kind: int) -> bytes | None:
        entry = _entry(message)
        if entry is None or entry.proto == EMULATED_PROTO:
            return None
        if entry.table != MAIN_TABLE and entry.table < SCOPED_TABLE_BASE:
            return None  # the local and other policy tables: no BSD counterpart
        rtm = RtMsghdr(rtm_version=RTM_VERSION, rtm_type=kind, rtm_index=entry.oif, rtm_flags=entry.flags | RTF_DONE)
        return assemble(rtm, _route_sockaddrs(entry, self.link(entry.oif)))
