"""UDP/IPv4 sockets for the tunnel: DF never set, batched receive (UDP GRO) and send (UDP GSO).

Two layers:

* module functions for any UDP socket, used by the gateway (one socket, many mobile nodes):
  :func:`open_udp_listener`, :func:`recv_batch`, :func:`send_batch`, :func:`udp_stats`;
* :class:`LinuxUdpChannel`, the client's connected socket toward one gateway (the ``UdpChannel`` ABC).

Receive batching: a wakeup reads until EAGAIN (bounded); with a :class:`~m6t.platform.linux.offload.Coalescer`
(when the TUN takes merged writes) consecutive TCP segments of one flow come out merged, one packet for
the lot.  Send batching: runs of equal-size datagrams, and the segments of a super-packet read from the TUN
(:class:`~m6t.platform.linux.offload.GsoPacket`), leave in one ``sendmsg`` with ``UDP_SEGMENT``.  Socket
buffers are sized with ``SO_RCVBUFFORCE``/``SO_SNDBUFFORCE`` when allowed (root), so that a reader busy
elsewhere for a moment does not lose datagrams; the plain options otherwise (capped by ``[rw]mem_max``).

Outer IPv4 data packets never carry DF (draft 2.6, as Teredo): ``IP_MTU_DISCOVER = IP_PMTUDISC_DONT``.
Path MTU probes (RFC 8899, :meth:`LinuxUdpChannel.send_probe`) do.  Linux has no per-datagram DF for IPv4
(``ip_cmsg_send`` takes no such control message; IPv6 has ``IPV6_DONTFRAG``), so the socket is switched to
``IP_PMTUDISC_PROBE`` for the probe -- ip(7): "Set the DF flag but ignore the path MTU", the one mode that
sets DF on datagrams larger than a path MTU the kernel cached, which is what a probe must do -- and back to
``IP_PMTUDISC_DONT`` before the next data datagram leaves.  Not before: the kernel queues an ICMP
fragmentation-needed to the socket's error queue only if the socket is not in ``IP_PMTUDISC_DONT`` when the
ICMP arrives (``__udp4_lib_err``); with DONT it only lowers the cached route MTU (which
:meth:`LinuxUdpChannel.path_mtu` reads).  So a probe's frag-needed is seen whenever the tunnel sends no data
within a round trip after it, as during the search right after connecting; otherwise the search falls back
on its timers.  A queued ICMP error is also reported once as ``sk_err`` (EMSGSIZE) by the next send or
receive: a send retries once, so that this report never passes for a datagram of its own being too large.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
import sys
import weakref
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address

from m6t.platform.base import PlatformError, UdpChannel
from m6t.protocol.values import MergedPacket, PmtuEvidence

assert sys.platform == "linux"

from m6t.platform.linux.offload import Coalescer, GsoPacket, datapath_options, segment_into, split  # noqa: E402

log = logging.getLogger(__name__)

# Linux ABI values; the socket module of Python 3.11 does not export them all.
SOL_IP = 0
SOL_UDP = 17
IP_MTU_DISCOVER = 10
IP_PMTUDISC_DONT = 0
IP_PMTUDISC_PROBE = 3
IP_RECVERR = 11
IP_MTU = 14
UDP_SEGMENT = 103
UDP_GRO = 104
MSG_ERRQUEUE = 0x2000
SO_EE_ORIGIN_LOCAL = 1
SO_EE_ORIGIN_ICMP = 2
ICMP_DEST_UNREACH = 3
ICMP_FRAG_NEEDED = 4

SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
SOCKET_BUFFER_BYTES = 4 << 20
"""Receive and send buffer of the client's socket: about 30 ms at 1 Gbit/s."""
GSO_MAX_SEGMENTS = 64
"""UDP_MAX_SEGMENTS of older kernels (newer ones allow 128): the portable bound."""
GSO_MAX_BYTES = 65000
"""Payload bytes per GSO send: stays under the 65535-byte IPv4 total length with headers."""
RECV_SIZE = 65536
"""Holds the largest UDP payload and the largest GRO-coalesced buffer alike."""
MAX_BATCH = 256
"""Datagrams delivered per wakeup at most, so one busy socket cannot starve the rest of the loop."""
SEGMENT_BUFFER = 2 * RECV_SIZE
"""Room to lay out the segments of one super-packet (64 KB of payload plus a header per segment)."""
_ANC_SIZE = 64
_ERRQ_DATA_SIZE = 64
"""Enough of a quote for the tunnel packet's IPv6 and ICMPv6 echo headers (48 bytes): which probe it was."""
_ERRQ_ANC_SIZE = 512
_ERRQ_MAX = 64

_EXTENDED_ERR = struct.Struct("=IBBBBII")
"""struct sock_extended_err: ee_errno, ee_origin, ee_type, ee_code, ee_pad, ee_info, ee_data."""
_GRO_SIZE = struct.Struct("=i")
_GSO_SIZE = struct.Struct("=H")

_ICMP_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.ENONET,
        errno.ENOPROTOOPT,
        errno.EOPNOTSUPP,
        errno.EPROTO,
        errno.EACCES,
        errno.EMSGSIZE,
    }
)
"""What a socket reports once (``sk_err``) after an ICMP error about an earlier datagram of ours."""
_GSO_UNSUPPORTED = frozenset({errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP})
_FATAL = frozenset({errno.EBADF, errno.ENOTSOCK, errno.EDESTADDRREQ, errno.ENOTCONN})
"""Send errors that are bugs in the caller, not network weather: raised, never counted."""

Address = tuple[str, int]
Datagrams = list[tuple[bytes, Address]]


class UdpStats:
    """Per-socket counters and batching state; read them for metrics (``udp_stats(sock)``)."""

    __slots__ = (
        "buffer",
        "dropped",
        "gro",
        "gro_buffers",
        "gso",
        "gso_max_segment",
        "gso_sends",
        "icmp_errors",
        "last_error",
        "merged",
        "oversize",
        "reads",
        "received",
        "segment_view",
        "segments",
        "send_errors",
        "sent",
        "view",
    )

    def __init__(self, *, gso: bool, gro: bool) -> None:
        self.buffer = bytearray(RECV_SIZE)
        self.view = memoryview(self.buffer)
        self.gso = gso
        """UDP GSO in use; turned off for good once the kernel says it cannot do it."""
        self.gso_max_segment = 65535
        """Largest segment size GSO is tried with: lowered when the kernel refuses one (EINVAL)."""
        self.gro = gro
        self.sent = 0
        self.gso_sends = 0
        self.dropped = 0
        """Datagrams dropped on send: full socket/device queue, or no route right now."""
        self.send_errors = 0
        """Datagrams dropped on any other send error; ``last_error`` holds its errno."""
        self.last_error = 0
        self.oversize = 0
        self.received = 0
        self.reads = 0
        """Successful receive calls (one per datagram, or per GRO buffer)."""
        self.gro_buffers = 0
        """Received buffers the kernel had coalesced (UDP GRO) and we split."""
        self.icmp_errors = 0
        """ICMP errors about our datagrams (port unreachable, ...): counted, never fatal."""
        self.merged = 0
        """Super-packets split into segments on send."""
        self.segments = bytearray(0)
        self.segment_view = memoryview(self.segments)

    def segment_buffer(self, size: int) -> bytearray:
        """The reusable buffer super-packets are split into (made on first use, grown if ever needed)."""
        if len(self.segments) < size:
            self.segments = bytearray(max(size, SEGMENT_BUFFER))
            self.segment_view = memoryview(self.segments)
        return self.segments


_stats: weakref.WeakKeyDictionary[socket.socket, UdpStats] = weakref.WeakKeyDictionary()


def udp_stats(sock: socket.socket) -> UdpStats:
    """The counters and batching state of ``sock`` (created on first use for a foreign socket)."""
    stats = _stats.get(sock)
    if stats is None:
        stats = UdpStats(gso=_gso_supported(sock), gro=_gro_enabled(sock))
        _stats[sock] = stats
    return stats


def _gso_supported(sock: socket.socket) -> bool:
    try:
        sock.getsockopt(SOL_UDP, UDP_SEGMENT)
    except OSError:
        return False
    return True


def _gro_enabled(sock: socket.socket) -> bool:
    try:
        return sock.getsockopt(SOL_UDP, UDP_GRO) != 0
    except OSError:
        return False


def set_buffers(sock: socket.socket, nbytes: int) -> tuple[int, int]:
    """SO_RCVBUF and SO_SNDBUF of ``nbytes``: forced past ``[rw]mem_max`` when allowed; the sizes granted."""
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, nbytes)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, nbytes)
    # The kernel reports twice what it was asked (it counts its own overhead).
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2,
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2,
    )


def configure_udp_socket(sock: socket.socket, *, recverr: bool, gro: bool = True) -> UdpStats:
    """DF clear, non-blocking, UDP GRO when the kernel has it, ICMP errors queued when ``recverr``.

    ``M6T_DATAPATH`` may turn GRO (``no-gro``) and GSO (``no-gso``) off.
    """
    options = datapath_options()
    gro = gro and "no-gro" not in options
    sock.setblocking(False)
    sock.setsockopt(SOL_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
    if recverr:
        sock.setsockopt(SOL_IP, IP_RECVERR, 1)
    gro_on = False
    if gro:
        try:
            sock.setsockopt(SOL_UDP, UDP_GRO, 1)
            gro_on = True
        except OSError:
            log.info("UDP GRO unavailable on this kernel; receiving one datagram per read")
    stats = UdpStats(gso=_gso_supported(sock) and "no-gso" not in options, gro=gro_on)
    _stats[sock] = stats
    return stats


def open_udp_listener(
    address: str, port: int, *, recverr: bool = False, buffer_bytes: int | None = None
) -> socket.socket:
    """A bound, unconnected, non-blocking UDP/IPv4 socket with the tunnel's options (DF clear, GRO).

    ``recverr`` is off by default: on an unconnected socket ICMP errors are then ignored by the kernel,
    which is what a gateway serving many peers wants.  ``buffer_bytes`` sets SO_RCVBUF and SO_SNDBUF
    (see :func:`set_buffers`).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        if buffer_bytes is not None:
            set_buffers(sock, buffer_bytes)
        configure_udp_socket(sock, recverr=recverr)
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        hint = "another process holds the port" if exc.errno == errno.EADDRINUSE else None
        raise PlatformError(f"cannot listen on UDP {address}:{port}: {exc.strerror}", hint=hint) from exc
    return sock


# Receive -----------------------------------------------------------------------------------------------


def recv_batch(
    sock: socket.socket,
    max_datagrams: int = MAX_BATCH,
    coalescer: Coalescer | None = None,
    stats: UdpStats | None = None,
) -> Datagrams:
    """Read until EAGAIN (or about ``max_datagrams``): ``[(payload, (ip, port)), ...]``.

    Coalesced GRO buffers are split back into the sender's datagrams, or, with a ``coalescer``, into
    packets where runs of one flow's segments are merged (:class:`~m6t.platform.linux.offload.GsoPacket`).
    ICMP-derived errors reported by the socket (port unreachable, ...) are counted and skipped, never
    raised.  Call :func:`drain_errors` too when the socket has ``recverr`` on.
    """
    out: Datagrams = []
    if stats is None:
        stats = udp_stats(sock)
    if coalescer is None:
        _recv_into(sock, stats, out, max_datagrams)
    else:
        _recv_merged(sock, stats, out, max_datagrams, coalescer)
    return out


def _recv_merged(sock: socket.socket, stats: UdpStats, out: Datagrams, limit: int, coalescer: Coalescer) -> None:
    recvmsg = sock.recvmsg
    anc_size = _ANC_SIZE if stats.gro else 0
    feed = coalescer.feed
    received = 0
    errors = 0
    try:
        while received < limit:
            try:
                data, ancdata, _flags, addr = recvmsg(RECV_SIZE, anc_size)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno not in _ICMP_ERRNOS:
                    raise
                stats.icmp_errors += 1
                errors += 1
                if errors > 16:
                    break
                continue
            stats.reads += 1
            n = len(data)
            segment = n
            for level, kind, cdata in ancdata:
                if level == SOL_UDP and kind == UDP_GRO:
                    segment = _GRO_SIZE.unpack_from(cdata)[0]
            if 0 < segment < n:
                stats.gro_buffers += 1
                received += -(-n // segment)
            else:
                received += 1
            feed(data, segment, addr, out)
    finally:
        coalescer.flush(out)
        stats.received += received


def _recv_into(sock: socket.socket, stats: UdpStats, out: Datagrams, limit: int) -> None:
    view = stats.view
    buffers = [view]
    recvmsg_into = sock.recvmsg_into
    anc_size = _ANC_SIZE if stats.gro else 0
    append = out.append
    before = len(out)
    errors = 0
    while len(out) < limit:
        try:
            n, ancdata, _flags, addr = recvmsg_into(buffers, anc_size)
        except BlockingIOError:
            break
        except OSError as exc:
            if exc.errno not in _ICMP_ERRNOS:
                raise
            # Each ICMP error is reported once; the bound only guards against a flood of them.
            stats.icmp_errors += 1
            errors += 1
            if errors > 16:
                break
            continue
        stats.reads += 1
        segment = n
        for level, kind, data in ancdata:
            if level == SOL_UDP and kind == UDP_GRO:
                segment = _GRO_SIZE.unpack_from(data)[0]
        if 0 < segment < n:
            stats.gro_buffers += 1
            for offset in range(0, n, segment):
                append((bytes(view[offset : min(offset + segment, n)]), addr))
        else:
            append((bytes(view[:n]), addr))
    stats.received += len(out) - before


def drain_errors(sock: socket.socket, max_errors: int = _ERRQ_MAX, *, local: bool = False) -> list[PmtuEvidence]:
    """Empty the socket's error queue (``IP_RECVERR``); returns the fragmentation-needed evidence in it.

    An error queue left non-empty keeps the fd reporting EPOLLERR, so a reader must drain it every wakeup.
    The kernel only queues errors about datagrams of this very socket, so any evidence quotes our flow.
    """
    stats = udp_stats(sock)
    evidence: list[PmtuEvidence] = []
    for _ in range(max_errors):
        try:
            quoted, ancdata, _flags, _addr = sock.recvmsg(_ERRQ_DATA_SIZE, _ERRQ_ANC_SIZE, MSG_ERRQUEUE)
        except BlockingIOError:
            break
        except OSError as exc:
            if exc.errno in _ICMP_ERRNOS:
                stats.icmp_errors += 1
                continue
            raise
        for level, kind, data in ancdata:
            found = parse_extended_error(level, kind, data, quoted, local=local)
            if found is not None:
                evidence.append(found)
            elif level == SOL_IP and kind == IP_RECVERR:
                stats.icmp_errors += 1
    return evidence


def parse_extended_error(
    level: int, kind: int, data: bytes, quoted: bytes = b"", *, local: bool = False
) -> PmtuEvidence | None:
    """PMTU evidence in one ``IP_RECVERR`` control message, or ``None``.

    ``quoted``: the message's data, which for an ICMP error is what it quotes past our UDP header.  Local
    EMSGSIZE entries (``ip_local_error``) are taken only with ``local``, for a probe: one carries the MTU of
    the link the DF datagram did not fit; the failing send of a data datagram already reported itself.
    """
    if level != SOL_IP or kind != IP_RECVERR or len(data) < _EXTENDED_ERR.size:
        return None
    ee_errno, origin, icmp_type, icmp_code, _pad, info, _data = _EXTENDED_ERR.unpack_from(data)
    if origin == SO_EE_ORIGIN_ICMP and icmp_type == ICMP_DEST_UNREACH and icmp_code == ICMP_FRAG_NEEDED:
        return PmtuEvidence(mtu=info, source="icmp", quoted=bytes(quoted))
    if local and origin == SO_EE_ORIGIN_LOCAL and ee_errno == errno.EMSGSIZE:
        return PmtuEvidence(mtu=info, source="emsgsize")
    return None


# Send --------------------------------------------------------------------------------------------------


def send_batch(
    sock: socket.socket, dest: Address | None, datagrams: Sequence[bytes], stats: UdpStats | None = None
) -> int:
    """Send ``datagrams`` to ``dest`` (``None``: the connected peer), with UDP GSO where it applies.

    Runs of at least two equal-size datagrams (the last of a run may be shorter) go out in one
    ``sendmsg`` with ``UDP_SEGMENT``; everything else one by one.  Full queues, missing routes and ICMP
    leftovers drop and count (see :func:`udp_stats`) instead of raising.  Returns how many datagrams the
    kernel refused as too large (EMSGSIZE).  ``stats``: the socket's :func:`udp_stats`, when the caller
    has them at hand (saves a lookup per call).
    """
    if stats is None:
        stats = udp_stats(sock)
    n = len(datagrams)
    oversize = 0
    i = 0
    while i < n:
        first = datagrams[i]
        if first.__class__ is not bytes and isinstance(first, MergedPacket):
            oversize += _send_merged(sock, dest, first, stats)
            i += 1
            continue
        size = len(datagrams[i])
        if stats.gso and i + 1 < n and 0 < size <= stats.gso_max_segment:
            limit = min(n, i + GSO_MAX_SEGMENTS)
            total = size
            j = i + 1
            while (
                j < limit
                and len(datagrams[j]) == size
                and total + size <= GSO_MAX_BYTES
                and datagrams[j].__class__ is bytes
            ):
                total += size
                j += 1
            if (
                j < limit
                and 0 < len(datagrams[j]) < size
                and total + len(datagrams[j]) <= GSO_MAX_BYTES
                and datagrams[j].__class__ is bytes
            ):
                j += 1
            if j - i >= 2:
                oversize += _send_gso(sock, dest, datagrams[i:j], size, stats)
                i = j
                continue
        oversize += _send_one(sock, dest, datagrams[i], stats)
        i += 1
    return oversize


def _send_merged(sock: socket.socket, dest: Address | None, packet: MergedPacket, stats: UdpStats) -> int:
    """The packets a super-packet stands for: laid out once, sent in runs of at most 64 KB with UDP GSO."""
    if not isinstance(packet, GsoPacket):
        stats.send_errors += packet.segments
        return 0
    stats.merged += 1
    if not stats.gso:
        return sum(_send_one(sock, dest, part, stats) for part in split(packet))
    buf = stats.segment_buffer(len(packet) + (packet.segments - 1) * packet.overhead)
    total, size = segment_into(packet, buf)
    view = stats.segment_view
    per_send = max(1, min(GSO_MAX_SEGMENTS, GSO_MAX_BYTES // size)) * size
    oversize = 0
    for start in range(0, total, per_send):
        end = min(start + per_send, total)
        if end - start <= size or size > stats.gso_max_segment:
            for o in range(start, end, size):
                oversize += _send_one(sock, dest, view[o : min(o + size, end)], stats)
        else:
            oversize += _send_gso(
                sock, dest, [view[o : min(o + size, end)] for o in range(start, end, size)], size, stats
            )
    return oversize


def _send_gso(
    sock: socket.socket, dest: Address | None, run: Sequence[bytes | memoryview], size: int, stats: UdpStats
) -> int:
    ancdata = [(SOL_UDP, UDP_SEGMENT, _GSO_SIZE.pack(size))]
    try:
        try:
            if dest is None:
                sock.sendmsg(run, ancdata)
            else:
                sock.sendmsg(run, ancdata, 0, dest)
        except OSError as first:
            if first.errno != errno.EMSGSIZE:
                raise
            # A GSO send is never over 64 KB here: this is the one-shot report of a frag-needed (a probe's).
            stats.icmp_errors += 1
            if dest is None:
                sock.sendmsg(run, ancdata)
            else:
                sock.sendmsg(run, ancdata, 0, dest)
    except BlockingIOError:
        stats.dropped += len(run)
        return 0
    except OSError as exc:
        code = exc.errno
        if code == errno.ENOBUFS:
            stats.dropped += len(run)
            return 0
        if code in _GSO_UNSUPPORTED:
            log.info("UDP GSO refused (%s); sending datagrams one by one from now on", exc.strerror)
            stats.gso = False
        sent_before = stats.sent
        oversize = sum(_send_one(sock, dest, datagram, stats) for datagram in run)
        if code in (errno.EMSGSIZE, errno.EINVAL) and stats.sent > sent_before:
            # The datagrams themselves went out (fragmented), so the kernel refused the segment size:
            # GSO segments are never fragmented and must fit the route MTU.  Smaller runs keep GSO.
            stats.gso_max_segment = size - 1
            log.info("UDP GSO refused for %d-byte segments; sending those one by one", size)
        return oversize
    stats.sent += len(run)
    stats.gso_sends += 1
    return 0


def _send_one(sock: socket.socket, dest: Address | None, datagram: bytes | memoryview, stats: UdpStats) -> int:
    for attempt in (0, 1):
        try:
            if dest is None:
                sock.send(datagram)
            else:
                sock.sendto(datagram, dest)
        except BlockingIOError:
            stats.dropped += 1
            return 0
        except OSError as exc:
            code = exc.errno
            if code == errno.EMSGSIZE and attempt == 1:
                stats.oversize += 1
                return 1
            if code in _FATAL:
                raise
            if code in _ICMP_ERRNOS:
                if attempt == 0:
                    # Most likely the one-shot report of an ICMP error about an earlier datagram: the
                    # report is now consumed, so this datagram deserves another try.
                    stats.icmp_errors += 1
                    continue
                stats.dropped += 1
                return 0
            if code in (errno.ENOBUFS, errno.ENETDOWN):
                stats.dropped += 1
                return 0
            stats.send_errors += 1
            stats.last_error = code or 0
            return 0
        stats.sent += 1
        return 0
    return 0


# The client's channel ----------------------------------------------------------------------------------


class LinuxUdpChannel(UdpChannel):
    """A connected UDP socket toward one gateway, read with ``loop.add_reader``.

    ``coalescer``: merge runs of one flow's segments as they are read (only when the TUN they are
    written to takes merged packets, see :attr:`LinuxTun.vnet <m6t.platform.linux.tun.LinuxTun.vnet>`).
    ``uplink``: the interface the socket is bound to (``SO_BINDTODEVICE``, before the ``connect`` so that
    the route, the source address and the cached path MTU are those of the path through it).  GSO, GRO,
    the error queue and the probes' DF switch work on a bound socket as on any other.
    """

    def __init__(
        self,
        gateway: tuple[IPv4Address, int],
        local: Address | None = None,
        *,
        coalescer: Coalescer | None = None,
        buffer_bytes: int = SOCKET_BUFFER_BYTES,
        uplink: str | None = None,
    ) -> None:
        self._remote: Address = (str(gateway[0]), gateway[1])
        self.coalescer = coalescer
        self.uplink = uplink
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            set_buffers(sock, buffer_bytes)
            self.stats = configure_udp_socket(sock, recverr=True)
            if uplink is not None:
                # socket(7): "If a socket is bound to an interface, only packets received from that particular
                # interface are processed by the socket"; what it sends is routed through that interface.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, uplink.encode())
            if local is not None:
                sock.bind(local)
            sock.connect(self._remote)
        except OSError as exc:
            sock.close()
            through = f" through {uplink}" if uplink is not None else ""
            raise PlatformError(
                f"cannot open UDP toward {self._remote[0]}:{self._remote[1]}{through}: {exc.strerror}"
            ) from exc
        self.sock = sock
        self._local: Address = sock.getsockname()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_datagrams: Callable[[Sequence[tuple[bytes, Address]]], None] | None = None
        self._on_pmtu: Callable[[PmtuEvidence], None] | None = None
        self._sparse = False
        self._df = False
        """The socket sets DF (``IP_PMTUDISC_PROBE``): a probe left last, so its frag-needed gets queued."""

    @property
    def local_address(self) -> Address:
        return self._local

    @property
    def remote_address(self) -> Address:
        return self._remote

    def fileno(self) -> int:
        return self.sock.fileno()

    def path_mtu(self) -> int | None:
        """The kernel's current IPv4 path MTU toward the gateway (learned PMTU included), if known."""
        try:
            return int(self.sock.getsockopt(SOL_IP, IP_MTU))
        except OSError:
            return None

    def start_reading(
        self,
        loop: asyncio.AbstractEventLoop,
        on_datagrams: Callable[[Sequence[tuple[bytes, Address]]], None],
        on_pmtu: Callable[[PmtuEvidence], None],
    ) -> None:
        self.stop_reading()
        self._loop = loop
        self._on_datagrams = on_datagrams
        self._on_pmtu = on_pmtu
        loop.add_reader(self.sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        sparse = self._sparse
        if sparse:
            # Sparse traffic (the previous wakeup needed one read): the first read goes up before we look
            # for more, so that the read that finds nothing (a system call and an exception) costs no
            # latency.  A burst after a quiet spell only has its first buffer go up alone.
            out = self._receive(1)
            if not out:
                self._drain_errors()
                return
            if self._on_datagrams is not None:
                self._on_datagrams(out)
            if self._on_datagrams is None:
                return
        stats = self.stats
        reads, errors = stats.reads, stats.icmp_errors
        out = self._receive(MAX_BATCH)
        self._sparse = stats.reads - reads <= 1
        if out and self._on_datagrams is not None:
            self._on_datagrams(out)
        if (not out and not sparse) or stats.icmp_errors != errors:
            # A queued error makes a receive fail once (counted), and holds receive-buffer memory until read.
            self._drain_errors()

    def _receive(self, limit: int) -> Datagrams:
        out: Datagrams = []
        if self.coalescer is None:
            _recv_into(self.sock, self.stats, out, limit)
        else:
            _recv_merged(self.sock, self.stats, out, limit, self.coalescer)
        return out

    def _drain_errors(self) -> None:
        """Readable with nothing to read: an error queued (EPOLLERR, level-triggered, until it is read).
        Draining only then saves a system call (and an exception) on every wakeup that brings data."""
        self._report(drain_errors(self.sock))

    def stop_reading(self) -> None:
        if self._loop is not None and self.sock.fileno() >= 0:
            self._loop.remove_reader(self.sock.fileno())
        self._loop = None
        self._on_datagrams = None
        self._on_pmtu = None

    def send(self, datagrams: Sequence[bytes]) -> None:
        if self._df:
            self._clear_df()
        if len(datagrams) == 1 and datagrams[0].__class__ is bytes:
            # The common case when traffic is light: one packet per wakeup, no batching to look for.
            try:
                self.sock.send(datagrams[0])
            except OSError:
                pass  # the general path below tells the errors apart (and retries once where it helps)
            else:
                self.stats.sent += 1
                return
        if send_batch(self.sock, None, datagrams, self.stats) and self._on_pmtu is not None:
            self._on_pmtu(PmtuEvidence(mtu=0, source="emsgsize"))

    def send_probe(self, datagram: bytes) -> None:
        """One datagram with DF set, whatever path MTU the kernel cached (``IP_PMTUDISC_PROBE``, see the module
        docstring); an EMSGSIZE is told apart through the error queue: a local entry is this probe too large
        for the link (its MTU reported), an ICMP one the delayed report of an earlier probe's frag-needed."""
        sock, stats = self.sock, self.stats
        if not self._df:
            sock.setsockopt(SOL_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
            self._df = True
        for attempt in (0, 1):
            try:
                sock.send(datagram)
            except BlockingIOError:
                stats.dropped += 1
                return
            except OSError as exc:
                code = exc.errno
                if code in _FATAL:
                    raise
                if code != errno.EMSGSIZE and code not in _ICMP_ERRNOS:
                    stats.send_errors += 1
                    stats.last_error = code or 0
                    return
                evidence = drain_errors(sock, local=True)
                local = any(e.source == "emsgsize" for e in evidence)
                self._report(evidence)
                if code == errno.EMSGSIZE and (local or attempt == 1):
                    stats.oversize += 1
                    if not local:
                        self._report([PmtuEvidence(mtu=0, source="emsgsize")])
                    return
                stats.icmp_errors += 1
                continue
            stats.sent += 1
            return

    def _clear_df(self) -> None:
        self.sock.setsockopt(SOL_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
        self._df = False

    def _report(self, evidence: list[PmtuEvidence]) -> None:
        on_pmtu = self._on_pmtu
        if on_pmtu is not None:
            for found in evidence:
                on_pmtu(found)

    def close(self) -> None:
        self.stop_reading()
        self.sock.close()
