"""The PF_ROUTE routing socket: message layouts, a request/reply helper, and the tunnel's route operations.

Messages (XNU bsd/net/route.h, bsd/net/if.h; host byte order, little-endian on every supported Mac):

=================  =====  ===============================================================================
header             bytes  layout
=================  =====  ===============================================================================
rt_msghdr          92     u_short msglen; u_char version (RTM_VERSION 5), type; u_short index; (2 pad)
                          int flags, addrs; pid_t pid; int seq, errno, use; u_int32 inits;
                          struct rt_metrics (14 x u_int32 = 56)
ifa_msghdr         20     u_short msglen; u_char version, type; int addrs, flags; u_short index; (2 pad)
                          int metric                                            (RTM_NEWADDR/DELADDR)
if_msghdr          112    u_short msglen; u_char version, type; int addrs, flags; u_short index; (2 pad)
                          struct if_data (96)                                   (RTM_IFINFO)
ifma_msghdr        16     u_short msglen; u_char version, type; int addrs, flags; u_short index; (2 pad)
=================  =====  ===============================================================================

After the header come the sockaddrs whose RTA_* bit is set in ``addrs``, in RTAX order, each padded to a
multiple of 4 bytes -- ``ROUNDUP32`` in bsd/net/rtsock.c: macOS rounds to ``sizeof(uint32_t)`` even on
64-bit kernels, where FreeBSD's ``SA_SIZE`` rounds to ``sizeof(long)`` -- and an ``sa_len`` of 0 still takes
4 bytes.  Netmasks from the kernel come trimmed after their last non-zero byte (a /0 mask is an empty
sockaddr), and their family byte is not to be trusted: they are read against the destination's family.

Requests are answered synchronously: ``write`` fails with the kernel's errno (EEXIST, ESRCH, EPERM...), and
the message, completed (RTM_GET) or stamped with ``rtm_errno``, is queued to every routing socket, the sender
included, before ``write`` returns.

**No metric on macOS.**  The BSD routing table keeps one route per destination and mask; there is no metric
to rank a last-resort route below the system's.  :attr:`Route.metric <m6t.protocol.values.Route.metric>` is
therefore ignored, and the priority the Linux metric expresses (the tunnel's ``::/0`` loses to a native
IPv6 default) is obtained by never displacing another interface's route:

* an ``RTM_GET`` of exactly that destination and mask says whose route is there;
* none: ``RTM_ADD`` an ordinary route whose gateway is the utun's link-layer sockaddr (``sockaddr_dl``),
  flags ``RTF_UP | RTF_STATIC`` (``| RTF_HOST`` and no netmask for a /128, as route(8) does);
* ours: ``RTM_CHANGE`` it (on ESRCH, or EEXIST from a racing ``RTM_ADD``, the lookup is done once more);
* another interface's route for it: install ours *interface-scoped* (``RTF_IFSCOPE``, ``rtm_index`` = the
  utun) next to it.  Unbound sockets keep using the native route, sockets bound to the utun use ours.  If
  the native route goes away later, ours stays scoped until the routes are next installed (the session
  does that when it connects); on the IPv4-only networks m6t is for there is no native IPv6 default, and
  ours goes in unscoped from the start.

Scoped routes are only ever added or deleted, never looked up or changed: an XNU lookup scoped to an
interface falls back to the unscoped route through that interface when the scoped one is missing, and a
scoped ``RTM_CHANGE`` could then rewrite the native route.  The path toward the gateway through one uplink
is looked up scoped (:func:`lookup` with ``scope``), which only reads.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from m6t.platform.base import PlatformError, PlatformErrorCode
from m6t.platform.darwin.syscalls import AF_INET, AF_INET6, AF_LINK, AF_UNSPEC, PF_ROUTE, SOCK_RAW, Syscalls

RTM_VERSION = 5

RTM_ADD = 0x1
RTM_DELETE = 0x2
RTM_CHANGE = 0x3
RTM_GET = 0x4
RTM_LOSING = 0x5
RTM_REDIRECT = 0x6
RTM_MISS = 0x7
RTM_LOCK = 0x8
RTM_RESOLVE = 0xB
RTM_NEWADDR = 0xC
RTM_DELADDR = 0xD
RTM_IFINFO = 0xE
RTM_NEWMADDR = 0xF
RTM_DELMADDR = 0x10

RTF_UP = 0x1
RTF_GATEWAY = 0x2
RTF_HOST = 0x4
RTF_REJECT = 0x8
RTF_DONE = 0x40
RTF_LLINFO = 0x400
RTF_STATIC = 0x800
RTF_BLACKHOLE = 0x1000
RTF_WASCLONED = 0x20000
RTF_IFSCOPE = 0x1000000

RTA_DST = 0x1
RTA_GATEWAY = 0x2
RTA_NETMASK = 0x4
RTA_GENMASK = 0x8
RTA_IFP = 0x10
RTA_IFA = 0x20
RTA_AUTHOR = 0x40
RTA_BRD = 0x80

RTAX_DST = 0
RTAX_GATEWAY = 1
RTAX_NETMASK = 2
RTAX_GENMASK = 3
RTAX_IFP = 4
RTAX_IFA = 5
RTAX_AUTHOR = 6
RTAX_BRD = 7
RTAX_MAX = 8

RT_MSGHDR = struct.Struct("=HBBH2xiiiiiiI56x")
"""struct rt_msghdr without its rt_metrics, which the backend neither sets nor reads (zeroed)."""
IFA_MSGHDR = struct.Struct("=HBBiiH2xi")
IF_MSGHDR_SIZE = 112
IFMA_MSGHDR_SIZE = 16
_COMMON = struct.Struct("=HBB")
_ADDR_FLAGS_INDEX = struct.Struct("=iiH")
"""The fields ifa/if/ifma_msghdr share from offset 4: addrs, flags, index."""

SOCKADDR_IN = struct.Struct("=BBH4s8x")
SOCKADDR_IN6 = struct.Struct("=BBHI16sI")
SOCKADDR_DL = struct.Struct("=BBHBBBB")
"""struct sockaddr_dl (net/if_dl.h) up to sdl_data: len, family, index, type, nlen, alen, slen."""
SOCKADDR_DL_MIN = 20
"""sizeof(struct sockaddr_dl): the header above and char sdl_data[12]."""

_ROUTE_TYPES = frozenset(range(RTM_ADD, RTM_RESOLVE + 1))
_HEADER_SIZES = {RTM_NEWADDR: IFA_MSGHDR.size, RTM_DELADDR: IFA_MSGHDR.size, RTM_IFINFO: IF_MSGHDR_SIZE}
_HEADER_SIZES |= {RTM_NEWMADDR: IFMA_MSGHDR_SIZE, RTM_DELMADDR: IFMA_MSGHDR_SIZE}
_HEADER_SIZES |= dict.fromkeys(_ROUTE_TYPES, RT_MSGHDR.size)

READ_SIZE = 16384
"""Larger than any routing message (a header and eight sockaddrs of at most 255 bytes)."""
REPLY_TIMEOUT = 2.0

_seq = itertools.count(1)

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


class RoutingMessageError(ValueError):
    """Bytes that are not a well-formed routing message (the only exception the parser raises)."""


@dataclass(frozen=True, slots=True)
class RoutingMessage:
    type: int
    index: int
    """rtm_index / ifam_index / ifm_index: the interface concerned (0 when the kernel does not say)."""
    flags: int
    addrs: int
    pid: int = 0
    seq: int = 0
    errno: int = 0
    sockaddrs: Mapping[int, bytes] = field(default_factory=dict)
    """RTAX_* → the raw sockaddr (``sa_len`` bytes; an empty sockaddr is ``b""``)."""

    def family(self, rtax: int) -> int | None:
        sa = self.sockaddrs.get(rtax)
        return sa[1] if sa is not None and len(sa) >= 2 else None

    def address(self, rtax: int) -> IPAddress | None:
        sa = self.sockaddrs.get(rtax)
        return decode_address(sa) if sa is not None else None

    def link(self, rtax: int) -> tuple[int, str] | None:
        sa = self.sockaddrs.get(rtax)
        return decode_link(sa) if sa is not None else None


def _roundup(length: int) -> int:
    return (length + 3) & ~3 if length > 0 else 4


def parse_message(data: bytes | memoryview) -> RoutingMessage:
    """One message at the start of ``data`` (its own ``msglen`` bytes); :class:`RoutingMessageError` if
    malformed.  Types with a header this module does not know come back without their sockaddrs."""
    data = bytes(data)
    if len(data) < _COMMON.size:
        raise RoutingMessageError(f"{len(data)} bytes: shorter than any routing message")
    msglen, version, kind = _COMMON.unpack_from(data)
    if msglen < _COMMON.size or msglen > len(data):
        raise RoutingMessageError(f"message length {msglen} with {len(data)} bytes at hand")
    if version != RTM_VERSION:
        raise RoutingMessageError(f"routing message version {version}, expected {RTM_VERSION}")
    header = _HEADER_SIZES.get(kind)
    if header is None:
        return RoutingMessage(type=kind, index=0, flags=0, addrs=0)
    if msglen < header:
        raise RoutingMessageError(f"type {kind} message of {msglen} bytes: its header alone takes {header}")
    pid = seq = error = 0
    if kind in _ROUTE_TYPES:
        _len, _version, _type, index, flags, addrs, pid, seq, error, _use, _inits = RT_MSGHDR.unpack_from(data)
    else:
        addrs, flags, index = _ADDR_FLAGS_INDEX.unpack_from(data, 4)
    return RoutingMessage(
        type=kind,
        index=index,
        flags=flags,
        addrs=addrs,
        pid=pid,
        seq=seq,
        errno=error,
        sockaddrs=_sockaddrs(data, header, msglen, addrs),
    )


def _sockaddrs(data: bytes, offset: int, end: int, addrs: int) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    for rtax in range(RTAX_MAX):
        if not addrs & (1 << rtax):
            continue
        if offset >= end:
            raise RoutingMessageError(f"sockaddr {rtax} announced but the message ends at {end}")
        length = data[offset]
        if offset + length > end:
            raise RoutingMessageError(f"sockaddr {rtax} of {length} bytes overruns the message")
        found[rtax] = data[offset : offset + length]
        offset += _roundup(length)
    return found


def parse_messages(data: bytes | memoryview) -> list[RoutingMessage]:
    """Every message in ``data`` (a socket read returns one; several are tolerated back to back)."""
    data = bytes(data)
    messages: list[RoutingMessage] = []
    offset = 0
    while offset < len(data):
        message = parse_message(data[offset:])
        messages.append(message)
        offset += _COMMON.unpack_from(data, offset)[0]
    return messages


def decode_address(sa: bytes) -> IPAddress | None:
    """The address in a sockaddr_in / sockaddr_in6; ``None`` for other families or short sockaddrs."""
    if len(sa) < 2:
        return None
    if sa[1] == AF_INET and len(sa) >= 8:
        return IPv4Address(sa[4:8])
    if sa[1] == AF_INET6 and len(sa) >= 24:
        return IPv6Address(sa[8:24])
    return None


def decode_link(sa: bytes) -> tuple[int, str] | None:
    """(sdl_index, interface name) of a sockaddr_dl; ``None`` if it is not one."""
    if len(sa) < SOCKADDR_DL.size or sa[1] != AF_LINK:
        return None
    _len, _family, index, _type, nlen, _alen, _slen = SOCKADDR_DL.unpack_from(sa)
    name = sa[SOCKADDR_DL.size : SOCKADDR_DL.size + nlen]
    return index, name.decode("utf-8", "replace")


def decode_prefixlen(sa: bytes, family: int) -> int:
    """The prefix length of a netmask sockaddr read as ``family`` (its own family byte is unreliable).

    Counts the leading one bits; bytes the kernel trimmed off the end are zeros.
    """
    start, size = (4, 4) if family == AF_INET else (8, 16)
    mask = sa[start : start + size].ljust(size, b"\0")
    bits = int.from_bytes(mask, "big")
    total = size * 8
    inverted = ~bits & ((1 << total) - 1)
    return total - inverted.bit_length()


def encode_address(address: IPAddress) -> bytes:
    if isinstance(address, IPv4Address):
        return SOCKADDR_IN.pack(SOCKADDR_IN.size, AF_INET, 0, address.packed)
    return SOCKADDR_IN6.pack(SOCKADDR_IN6.size, AF_INET6, 0, 0, address.packed, 0)


def encode_netmask(network: IPNetwork) -> bytes:
    """A full-length netmask sockaddr (route(8) sends them whole; the kernel trims its own)."""
    return encode_address(network.netmask)


def encode_link(index: int, name: str = "") -> bytes:
    """A sockaddr_dl naming an interface by index (and name): the gateway of an interface route."""
    raw = name.encode("utf-8", "surrogateescape")
    length = max(SOCKADDR_DL_MIN, SOCKADDR_DL.size + len(raw))
    return SOCKADDR_DL.pack(length, AF_LINK, index, 0, len(raw), 0, 0) + raw.ljust(length - SOCKADDR_DL.size, b"\0")


def build_message(kind: int, *, seq: int, sockaddrs: Mapping[int, bytes], flags: int = 0, index: int = 0) -> bytes:
    """An rt_msghdr request (``rtm_pid`` is left 0: the kernel stamps the sender's)."""
    addrs = 0
    body = bytearray()
    for rtax in range(RTAX_MAX):
        sa = sockaddrs.get(rtax)
        if sa is None:
            continue
        if not sa or sa[0] != len(sa):
            # rt_xaddrs stops at an sa_len of 0 and trusts sa_len for the rest: both would corrupt the request.
            raise ValueError(f"sockaddr {rtax}: sa_len must be its non-zero length")
        addrs |= 1 << rtax
        body += sa.ljust(_roundup(len(sa)), b"\0")
    header = RT_MSGHDR.pack(RT_MSGHDR.size + len(body), RTM_VERSION, kind, index, flags, addrs, 0, seq, 0, 0, 0)
    return header + bytes(body)


def next_seq() -> int:
    return next(_seq) & 0x7FFFFFFF


# The socket ------------------------------------------------------------------------------------------


class RouteSocket:
    """A routing socket for a few requests (opened per operation, so no stale broadcasts pile up in it)."""

    def __init__(self, syscalls: Syscalls) -> None:
        self._sys = syscalls
        try:
            self.fd = syscalls.socket(PF_ROUTE, SOCK_RAW, AF_UNSPEC)
        except OSError as exc:
            raise PlatformError(f"cannot open a routing socket: {exc.strerror}") from exc
        try:
            syscalls.set_nonblocking(self.fd)
        except BaseException:
            syscalls.close(self.fd)
            raise

    def __enter__(self) -> RouteSocket:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            self._sys.close(fd)

    def send(self, message: bytes) -> None:
        """Write one request; the kernel's verdict comes back as ``OSError``."""
        written = self._sys.write(self.fd, message)
        if written != len(message):
            raise OSError(errno.EIO, f"routing socket took {written} of {len(message)} bytes")

    async def get(self, message: bytes, seq: int, timeout: float = REPLY_TIMEOUT) -> RoutingMessage | None:
        """Send an RTM_GET; the kernel's completed copy of it, or ``None`` when it has no such route."""
        try:
            self.send(message)
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                return None
            raise
        pid = self._sys.getpid()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                data = self._sys.read(self.fd, READ_SIZE)
            except BlockingIOError:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise PlatformError("the routing socket did not answer an RTM_GET") from None
                await _readable(loop, self.fd, remaining)
                continue
            try:
                messages = parse_messages(data)
            except RoutingMessageError:
                continue
            for reply in messages:
                if reply.type == RTM_GET and reply.seq == seq and reply.pid == pid:
                    return reply if reply.errno == 0 else None


async def _readable(loop: asyncio.AbstractEventLoop, fd: int, timeout: float) -> None:
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await asyncio.wait_for(ready, timeout)
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(fd)


# Lookups ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """The kernel's answer to ``route get``."""

    destination: IPNetwork | None
    index: int
    """The egress interface's index (rtm_index)."""
    interface: str | None
    """Its name, from the RTA_IFP sockaddr_dl."""
    local: IPAddress | None
    """RTA_IFA: the route's interface address, the source the kernel uses on it."""
    gateway: IPAddress | None
    """RTA_GATEWAY when it is an IP address (a next hop), not the link itself."""
    flags: int


def route_info(reply: RoutingMessage) -> RouteInfo:
    family = reply.family(RTAX_DST)
    dst = reply.address(RTAX_DST)
    destination: IPNetwork | None = None
    if dst is not None and family is not None:
        full = 32 if family == AF_INET else 128
        mask = reply.sockaddrs.get(RTAX_NETMASK)
        prefixlen = full if reply.flags & RTF_HOST or mask is None else decode_prefixlen(mask, family)
        destination = _network(dst, prefixlen)
    link = reply.link(RTAX_IFP)
    gateway_link = reply.link(RTAX_GATEWAY)
    index = reply.index or (link[0] if link else 0) or (gateway_link[0] if gateway_link else 0)
    return RouteInfo(
        destination=destination,
        index=index,
        interface=link[1] if link and link[1] else None,
        local=reply.address(RTAX_IFA),
        gateway=reply.address(RTAX_GATEWAY),
        flags=reply.flags,
    )


def _network(address: IPAddress, prefixlen: int) -> IPNetwork | None:
    try:
        if isinstance(address, IPv4Address):
            return IPv4Network((address, prefixlen), strict=False)
        return IPv6Network((address, prefixlen), strict=False)
    except ValueError:
        return None


async def lookup(syscalls: Syscalls, destination: IPAddress, *, scope: int = 0) -> RouteInfo | None:
    """The route the kernel would use toward ``destination`` (``route get``), ``None`` when it has none.

    ``scope``: an interface index; the look-up is then scoped to it (``RTF_IFSCOPE`` with ``rtm_index``, as
    ``route get -ifscope``): "If RTF_IFSCOPE flag is set, then rtm_index specifies the scope" (rtsock.c).
    XNU's ``rt_lookup`` answers a scoped look-up with a route through that interface only -- the scoped
    routes configd installs for every non-primary service, or an unscoped one on the same interface -- and
    drops an unscoped match through another interface ("Wrong interface; keep the original result only if
    the caller did not specify a scope"), so no route through it is ESRCH, ``None`` here.
    """
    seq = next_seq()
    message = build_message(
        RTM_GET,
        seq=seq,
        # An empty sockaddr_dl under RTA_IFP asks for the interface (and RTA_IFA for its address), as route(8).
        sockaddrs={RTAX_DST: encode_address(destination), RTAX_IFP: encode_link(0)},
        flags=RTF_IFSCOPE if scope else 0,
        index=scope,
    )
    with RouteSocket(syscalls) as sock:
        try:
            reply = await sock.get(message, seq)
        except OSError as exc:
            raise PlatformError(f"route lookup toward {destination}: {exc.strerror}") from exc
    return route_info(reply) if reply is not None else None


async def _exact(sock: RouteSocket, network: IPNetwork) -> RouteInfo | None:
    """The unscoped route for exactly ``network``, or ``None``."""
    seq = next_seq()
    sockaddrs = {RTAX_DST: encode_address(network.network_address), RTAX_IFP: encode_link(0)}
    if network.prefixlen != network.max_prefixlen:
        # With a netmask the kernel looks the key-mask pair up exactly (rn_lookup), not the best match.
        sockaddrs[RTAX_NETMASK] = encode_netmask(network)
    try:
        reply = await sock.get(build_message(RTM_GET, seq=seq, sockaddrs=sockaddrs), seq)
    except OSError as exc:
        raise PlatformError(f"route lookup for {network}: {exc.strerror}") from exc
    if reply is None:
        return None
    info = route_info(reply)
    # A host route is looked up by best match: a covering route is an answer, but not the route asked about.
    return info if info.destination == network else None


# Changes ---------------------------------------------------------------------------------------------


def _change_message(kind: int, network: IPNetwork, index: int, ifname: str, *, scoped: bool) -> bytes:
    host = network.prefixlen == network.max_prefixlen
    flags = RTF_UP | RTF_STATIC | (RTF_HOST if host else 0) | (RTF_IFSCOPE if scoped else 0)
    sockaddrs = {RTAX_DST: encode_address(network.network_address)}
    if kind != RTM_DELETE:
        sockaddrs[RTAX_GATEWAY] = encode_link(index, ifname)
    if not host:
        sockaddrs[RTAX_NETMASK] = encode_netmask(network)
    return build_message(kind, seq=next_seq(), sockaddrs=sockaddrs, flags=flags, index=index if scoped else 0)


def _route_error(what: str, exc: OSError) -> PlatformError:
    if exc.errno in (errno.EPERM, errno.EACCES):
        return PlatformError(
            f"{what}: {exc.strerror}", hint="run the m6t helper as root", code=PlatformErrorCode.PERMISSION_DENIED
        )
    return PlatformError(f"{what}: {exc.strerror or exc}")


async def replace_route(syscalls: Syscalls, index: int, ifname: str, network: IPNetwork) -> None:
    """Route ``network`` into interface ``index``, behind any other interface's route for it (see above)."""
    what = f"add route {network} dev {ifname}"
    host = network.prefixlen == network.max_prefixlen
    with RouteSocket(syscalls) as sock:
        # Two rounds: the table may change between our look and our write (EEXIST / ESRCH), once.
        for _ in range(2):
            existing = await _exact(sock, network)
            try:
                if existing is None:
                    sock.send(_change_message(RTM_ADD, network, index, ifname, scoped=False))
                elif existing.index == index:
                    # Ours already.  A host route is left alone: without a netmask RTM_CHANGE takes the best
                    # match, which is a covering route if ours vanished meanwhile.
                    if not host:
                        sock.send(_change_message(RTM_CHANGE, network, index, ifname, scoped=False))
                else:
                    try:
                        sock.send(_change_message(RTM_ADD, network, index, ifname, scoped=True))
                    except OSError as exc:
                        # A route scoped to our interface for this destination can only be ours.
                        if exc.errno != errno.EEXIST:
                            raise
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ESRCH):
                    continue
                raise _route_error(what, exc) from exc
            return
    raise PlatformError(f"{what}: the routing table kept changing under us; try again")


async def remove_route(syscalls: Syscalls, index: int, ifname: str, network: IPNetwork) -> None:
    """Remove our route(s) for ``network``: unscoped if it is ours, and scoped; absent ones are fine."""
    what = f"remove route {network} dev {ifname}"
    with RouteSocket(syscalls) as sock:
        existing = await _exact(sock, network)
        candidates = [True]
        if existing is not None and existing.index == index:
            candidates.insert(0, False)
        for scoped in candidates:
            try:
                sock.send(_change_message(RTM_DELETE, network, index, ifname, scoped=scoped))
            except OSError as exc:
                if exc.errno not in (errno.ESRCH, errno.ENOENT, errno.ENXIO):
                    raise _route_error(what, exc) from exc
