"""Segmentation offloads for the TUN ⇄ UDP data path: virtio-net headers, checksums, split and merge.

With ``IFF_VNET_HDR`` every TUN read and write carries a 10-byte ``struct virtio_net_hdr`` first.  That
buys two things, each saving system calls (the data path's real cost, far above its Python work):

* **merged writes** (receive side, no checksum work): consecutive TCP segments of one flow arriving over
  UDP, often in one UDP GRO buffer, become one IPv6 packet of up to 64 KB written once, with a header
  asking the kernel to segment it again (``gso_type``, ``gso_size``) and to complete its checksum
  (``NEEDS_CSUM``: the checksum field holds the pseudo-header sum).  The kernel forwards or delivers it as
  one GSO packet, as if it had come from a NIC with GRO.  Equal-size UDP datagrams of one flow merge the
  same way (``GSO_UDP_L4``, kernels with TUN USO, 6.2+).  What is merged is exactly what the kernel's own
  GRO merges: same addresses, ports, traffic class, hop limit, ACK number, window and options, in-order
  sequence numbers, flags ACK (PSH only on the last), every segment but the last of the same size.
  Checksums of the merged segments are not verified (the kernel recomputes them for the merged packet):
  the outer UDP checksum, verified by the kernel, is what protects them in transit.

* **super-packet reads** (send side, ``TUNSETOFFLOAD`` with TSO): the kernel hands over TCP "super-packets"
  of up to 64 KB instead of segmenting them; :func:`segment_into` cuts one into MTU-sized packets laid end
  to end in one buffer, for one ``sendmsg`` with UDP GSO.  The price is that each segment's TCP checksum
  is computed here (``TUN_F_CSUM`` also leaves it to us for every other packet): off by default, see
  :data:`TSO_BY_DEFAULT`.

Packets that stand for several wire packets travel as :class:`GsoPacket` (a ``bytes`` subclass holding
the virtio-net header that describes them), so that the session and the gateway core check one header for
the lot.  All of this is optional: ``M6T_DATAPATH`` turns pieces off (see :func:`datapath_options`, which
:class:`~m6t.platform.linux.tun.LinuxTun` and the UDP sockets consult), and any kernel refusal falls back to
the plain path.  Whether received datagrams are merged is the TUN's to say, since it is what takes them:
``LinuxTun.coalescer()`` hands out a :class:`Coalescer` only when it takes merged writes, to the client's
backend and to the gateway alike.

Checksums are computed with ``int.from_bytes(data) % 0xFFFF``: 2**16 ≡ 1 (mod 0xFFFF), so a big-endian
number's residue is the ones-complement sum of its 16-bit words, in C loops rather than a Python one.
"""

from __future__ import annotations

import os
import struct
from typing import Final

from m6t.protocol.values import MergedPacket

# struct virtio_net_hdr (include/uapi/linux/virtio_net.h), in the host's byte order (TUN's default).
VNET_HDR: Final = struct.Struct("=BBHHHH")
"""flags, gso_type, hdr_len, gso_size, csum_start, csum_offset."""
VNET_HDR_LEN: Final = VNET_HDR.size
F_NEEDS_CSUM: Final = 1
GSO_NONE: Final = 0
GSO_TCPV4: Final = 1
GSO_TCPV6: Final = 4
GSO_UDP_L4: Final = 5
GSO_ECN: Final = 0x80
ZERO_VNET: Final = bytes(VNET_HDR_LEN)

IPV6_LEN: Final = 40
UDP_LEN: Final = 8
PROTO_TCP: Final = 6
PROTO_UDP: Final = 17
TCP_CHECK: Final = 16
UDP_CHECK: Final = 6
FIN: Final = 0x01
PSH: Final = 0x08
ACK: Final = 0x10
CWR: Final = 0x80
MAX_PAYLOAD: Final = 65535
"""The IPv6 payload length field's limit: no merged packet grows beyond it."""

_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")

DATAPATH_ENV: Final = "M6T_DATAPATH"
DATAPATH_WORDS: Final = frozenset({"plain", "no-vnet", "no-tso", "tso", "no-uso", "no-gso", "no-gro"})
"""``plain``: everything below off; ``no-vnet``: no virtio-net header (no merged writes, no super-packets);
``no-tso`` / ``tso``: whether the TUN hands over TCP super-packets; ``no-uso``: no merging of UDP datagrams;
``no-gso`` / ``no-gro``: no UDP segmentation / receive offload on the sockets."""
TSO_BY_DEFAULT: Final = False
"""Off: super-packet reads cost a Python checksum per segment (~2.5 µs per 1400 bytes here, where a read
system call costs about as much), and ``TUN_F_CSUM`` leaves every UDP checksum to us as well.  Measured
with ``python -m bench.datapath_quick --variant tso=tso`` on the 2-core lab machine: TCP 2.2 / 1.8 Gbit/s
(up / down) and 144 kpps UDP without, 1.4 / 1.4 Gbit/s and 90 kpps with.  Merged writes, which need no
checksum work, are what pays; ``M6T_DATAPATH=tso`` turns super-packet reads on."""


def datapath_options(environ: dict[str, str] | None = None) -> frozenset[str]:
    """The data-path switches from ``M6T_DATAPATH`` (comma-separated words; unknown ones are ignored)."""
    raw = (os.environ if environ is None else environ).get(DATAPATH_ENV, "")
    words = {word.strip().lower() for word in raw.split(",")} & DATAPATH_WORDS
    if "plain" in words:
        words |= {"no-vnet", "no-tso", "no-uso", "no-gso", "no-gro"}
    if "no-vnet" in words:
        words |= {"no-tso", "no-uso"}
    if not TSO_BY_DEFAULT and "tso" not in words:
        words.add("no-tso")
    if "no-tso" in words:
        words.discard("tso")
    return frozenset(words)


class GsoPacket(MergedPacket):
    """A :class:`MergedPacket` with the virtio-net header that describes it to the kernel (``vnet``)."""

    vnet: bytes


def ones_sum(data: bytes | bytearray | memoryview) -> int:
    """The ones-complement sum of ``data``'s 16-bit big-endian words (odd length: zero-padded), mod 0xFFFF."""
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8
    return value % 0xFFFF


def checksum_field(total: int) -> int:
    """The checksum to store for a ones-complement ``total``: its complement, never 0 (UDP's "no checksum")."""
    return 0xFFFF - total % 0xFFFF


def pseudo_partial(packet: bytes | bytearray | memoryview, proto: int, l4_length: int) -> int:
    """The value a ``NEEDS_CSUM`` packet's checksum field holds: the IPv6 pseudo-header sum, not inverted."""
    total = (ones_sum(packet[8:40]) + proto + l4_length) % 0xFFFF
    return total or 0xFFFF


def complete_checksum(buf: bytearray, length: int, csum_start: int, csum_offset: int) -> None:
    """Finish a ``NEEDS_CSUM`` packet in place: sum from ``csum_start`` (field included) to the end, invert."""
    if csum_start + csum_offset + 2 > length:
        return
    total = ones_sum(memoryview(buf)[csum_start:length])
    _U16.pack_into(buf, csum_start + csum_offset, checksum_field(total))


def make_gso_packet(data: bytes | bytearray | memoryview, vnet: bytes) -> GsoPacket | None:
    """``data`` as read after ``vnet`` from a TUN, as a :class:`GsoPacket` if it stands for several IPv6 TCP
    or UDP packets; ``None`` otherwise (an ordinary packet, whose checksum may still need completing)."""
    _flags, gso_type, _hdr_len, gso_size, csum_start, _off = VNET_HDR.unpack(vnet)
    kind = gso_type & ~GSO_ECN
    n = len(data)
    if kind == GSO_TCPV6 and csum_start + 20 <= n:
        headers = csum_start + ((data[csum_start + 12] >> 4) << 2)
    elif kind == GSO_UDP_L4 and csum_start + UDP_LEN <= n:
        headers = csum_start + UDP_LEN
    else:
        return None
    payload = n - headers
    if gso_size <= 0 or payload <= gso_size:
        return None
    packet = GsoPacket(data)
    packet.vnet = bytes(vnet)
    packet.segments = -(-payload // gso_size)
    packet.overhead = headers
    return packet


# Splitting ------------------------------------------------------------------------------------------------


def segment_into(packet: GsoPacket, out: bytearray) -> tuple[int, int]:
    """Cut ``packet`` into the packets it stands for, laid end to end in ``out``, each with its checksum.

    Returns ``(total bytes, segment size)``: every segment has that size but the last, which may be
    shorter (the layout UDP GSO sends).  TCP follows the kernel's ``tcp_gso_segment``: consecutive
    sequence numbers; FIN and PSH only on the last segment, CWR only on the first.  ``out`` must hold
    ``len(packet) + (segments - 1) * overhead`` bytes.
    """
    _flags, gso_type, _hdr_len, mss, thoff, _off = VNET_HDR.unpack(packet.vnet)
    if gso_type & ~GSO_ECN == GSO_UDP_L4:
        return _segment_udp(packet, thoff, mss, out)
    return _segment_tcp(packet, thoff, mss, out)


def _segment_tcp(p: GsoPacket, thoff: int, mss: int, out: bytearray) -> tuple[int, int]:
    pv = memoryview(p)
    thl = (p[thoff + 12] >> 4) << 2
    hl = thoff + thl
    n = len(p)
    seglen = hl + mss
    ip_full = bytearray(p[:thoff])
    _U16.pack_into(ip_full, 4, seglen - IPV6_LEN)
    tcp = bytearray(p[thoff:hl])
    flags = tcp[13]
    seq0 = _U32.unpack_from(tcp, 4)[0]
    tcp[16] = tcp[17] = 0
    template = bytes(tcp)
    tcp[4:8] = b"\0\0\0\0"
    tcp[13] = 0
    # The sum of everything but the per-segment fields (sequence number, flags, length, payload).
    base = ones_sum(pv[8:40]) + PROTO_TCP + ones_sum(tcp)
    middle = flags & ~(FIN | PSH)
    seg_flags = middle
    sums = ones_sum
    # Full segments' payload sums: one fold (2**half ≡ 1 mod 0xFFFF) makes the division half as long.
    odd = mss & 1
    half = 16 * ((8 * (mss + odd) + 31) // 32)
    mask = (1 << half) - 1
    from_bytes = int.from_bytes
    pack32 = _U32.pack_into
    pack16 = _U16.pack_into
    full = bytes(ip_full)
    o = 0
    a = hl
    seq = seq0
    while a < n:
        b = a + mss
        if b >= n:
            b = n
            seg_flags = flags if o == 0 else flags & ~CWR
            _U16.pack_into(ip_full, 4, thl + b - a + thoff - IPV6_LEN)
            out[o : o + thoff] = ip_full
        else:
            out[o : o + thoff] = full
        payload = pv[a:b]
        t = o + thoff
        out[t : t + thl] = template
        pack32(out, t + 4, seq)
        out[t + 13] = seg_flags
        if b - a == mss:
            x = from_bytes(payload, "big") << 8 if odd else from_bytes(payload, "big")
            x = (x >> half) + (x & mask)
        else:
            x = sums(payload)
        total = base + thl + b - a + (seq >> 16) + (seq & 0xFFFF) + seg_flags + x
        pack16(out, t + TCP_CHECK, 0xFFFF - total % 0xFFFF)
        out[t + thl : t + thl + b - a] = payload
        o += hl + b - a
        a = b
        seq = (seq + mss) & 0xFFFFFFFF
        seg_flags = middle & ~CWR
    return o, seglen


def _segment_udp(p: GsoPacket, thoff: int, mss: int, out: bytearray) -> tuple[int, int]:
    pv = memoryview(p)
    hl = thoff + UDP_LEN
    n = len(p)
    seglen = hl + mss
    ip_hdr = bytearray(p[:thoff])
    udp = bytearray(p[thoff:hl])
    udp[6] = udp[7] = 0
    base = ones_sum(pv[8:40]) + PROTO_UDP + ones_sum(udp[0:4])
    o = 0
    a = hl
    last_len = -1
    while a < n:
        b = min(a + mss, n)
        l4 = UDP_LEN + b - a
        if l4 != last_len:
            _U16.pack_into(ip_hdr, 4, thoff - IPV6_LEN + l4)
            _U16.pack_into(udp, 4, l4)
            last_len = l4
        out[o : o + thoff] = ip_hdr
        t = o + thoff
        out[t : t + UDP_LEN] = udp
        _U16.pack_into(out, t + UDP_CHECK, checksum_field(base + 2 * l4 + ones_sum(pv[a:b])))
        out[t + UDP_LEN : t + l4] = pv[a:b]
        o += thoff + l4
        a = b
    return o, seglen


def split(packet: GsoPacket) -> list[bytes]:
    """The packets ``packet`` stands for, as separate objects (the slow path, for plain devices)."""
    out = bytearray(len(packet) + (packet.segments - 1) * packet.overhead)
    total, size = segment_into(packet, out)
    view = memoryview(out)
    return [bytes(view[o : min(o + size, total)]) for o in range(0, total, size)]


# Merging ------------------------------------------------------------------------------------------------

Address = tuple[str, int]
Datagrams = list[tuple[bytes, Address]]


class Coalescer:
    """Merges consecutive packets of one flow, as the kernel's GRO would, into merged packets (:class:`GsoPacket`).

    Fed datagram buffers in arrival order (:meth:`feed`: one UDP GRO buffer of equal-size datagrams, or a
    single datagram), it appends ``(packet, source)`` to an output list in the same order, except that runs
    of mergeable packets become one packet; :meth:`flush` ends the last run (call it at the end of every
    batch).  Packets it cannot merge pass through unchanged, and a run ends at anything else of the same
    source, so the order within each flow is kept.  ``udp`` enables merging UDP datagrams (needs a
    kernel whose TUN takes ``GSO_UDP_L4`` writes).
    """

    __slots__ = (
        "__weakref__",
        "_addr",
        "_count",
        "_end",
        "_head",
        "_kind",
        "_mss",
        "_next_seq",
        "_offset",
        "_open",
        "_parts",
        "_psh",
        "_size",
        "_source",
        "_total",
        "merged_packets",
        "merged_segments",
        "udp",
    )

    def __init__(self, *, udp: bool = True) -> None:
        self.udp = udp
        self._kind = 0
        """0: no run; PROTO_TCP or PROTO_UDP: a run of that protocol is open."""
        self._addr: Address | None = None
        self._head: bytes = b""
        """The run's first packet's headers (IPv6 + TCP/UDP)."""
        self._parts: list[memoryview] = []
        self._size = 0
        """Size of the run's first packet: all but the last have it."""
        self._mss = 0
        self._total = 0
        """Payload bytes in the run."""
        self._count = 0
        self._next_seq = 0
        self._open = False
        """Whether the run may still grow (not after a shorter packet or PSH)."""
        self._psh = False
        self._source: bytes = b""
        """Where the run's first packet is (``_source[_offset:_end]``): passed through as is if alone."""
        self._offset = 0
        self._end = 0
        self.merged_packets = 0
        """Merged packets made (runs of two or more)."""
        self.merged_segments = 0
        """Packets that went into them."""

    def feed(self, data: bytes, segment: int, addr: Address, out: Datagrams) -> None:
        """Datagrams of ``segment`` bytes each laid end to end in ``data`` (the last may be shorter)."""
        n = len(data)
        if segment <= 0 or segment > n:
            segment = n
        view: memoryview | None = None
        o = 0
        while o < n:
            end = o + segment
            end = min(end, n)
            size = end - o
            proto = data[o + 6] if size >= 48 else 0
            if (
                proto == PROTO_TCP
                and size > 60
                and data[o] >> 4 == 6
                and (data[o + 4] << 8 | data[o + 5]) + IPV6_LEN == size
            ):
                hl = IPV6_LEN + ((data[o + 52] >> 4) << 2)
                flags = data[o + 53]
                if size > hl >= 60 and (flags == ACK or flags == ACK | PSH):
                    if view is None:
                        view = memoryview(data)
                    seq = _U32.unpack_from(data, o + 44)[0]
                    if (
                        self._kind == PROTO_TCP
                        and self._open
                        and seq == self._next_seq
                        and addr == self._addr
                        and self._tcp_matches(data, o, size, hl, flags)
                        and self._total + size - hl <= MAX_PAYLOAD - hl + IPV6_LEN
                    ):
                        self._parts.append(view[o + hl : end])
                        self._count += 1
                        self._total += size - hl
                        self._next_seq = (seq + size - hl) & 0xFFFFFFFF
                        if flags & PSH:
                            self._open = False
                            self._psh = True
                        elif size < self._size:
                            self._open = False
                    else:
                        if self._kind:
                            self.flush(out)
                        self._start(PROTO_TCP, data, view, o, end, hl, addr)
                        self._next_seq = (seq + size - hl) & 0xFFFFFFFF
                        self._psh = bool(flags & PSH)
                        self._open = not self._psh
                    o = end
                    if self._open and segment == self._size:
                        o = self._run_tcp(data, view, o, n)
                    continue
            elif (
                proto == PROTO_UDP
                and self.udp
                and data[o] >> 4 == 6
                and (data[o + 4] << 8 | data[o + 5]) + IPV6_LEN == size
                and (data[o + 44] << 8 | data[o + 45]) + IPV6_LEN == size
            ):
                if view is None:
                    view = memoryview(data)
                if (
                    self._kind == PROTO_UDP
                    and self._open
                    and addr == self._addr
                    and size <= self._size
                    and self._total + size - 48 <= MAX_PAYLOAD - UDP_LEN
                    and (
                        data[o : o + 48 - 2] == self._head[:46]
                        if size == self._size
                        else data[o : o + 4] == self._head[:4] and data[o + 6 : o + 44] == self._head[6:44]
                    )
                ):
                    self._parts.append(view[o + 48 : end])
                    self._count += 1
                    self._total += size - 48
                    if size < self._size:
                        self._open = False
                else:
                    if self._kind:
                        self.flush(out)
                    self._start(PROTO_UDP, data, view, o, end, 48, addr)
                    self._open = True
                o = end
                if self._open and segment == self._size:
                    o = self._run_udp(data, view, o, n)
                continue
            if self._kind:
                self.flush(out)
            out.append((data if size == n else data[o:end], addr))
            o = end

    def _run_tcp(self, data: bytes, view: memoryview, o: int, n: int) -> int:
        """The fast path: full-size, ACK-only segments continuing the open run in this buffer."""
        head = self._head
        hl = len(head)
        size = self._size
        mss = size - hl
        fixed = head[:44]
        middle = head[48:56]
        if middle[5] != ACK:
            return o
        tail = head[58:hl]
        expected = self._next_seq
        total = self._total
        count = self._count
        append = self._parts.append
        starts = data.startswith
        unpack = _U32.unpack_from
        limit = MAX_PAYLOAD + IPV6_LEN - hl - mss
        while (
            o + size <= n
            and total <= limit
            and starts(fixed, o)
            and unpack(data, o + 44)[0] == expected
            and starts(middle, o + 48)
            and starts(tail, o + 58)
        ):
            append(view[o + hl : o + size])
            count += 1
            total += mss
            expected = (expected + mss) & 0xFFFFFFFF
            o += size
        self._next_seq = expected
        self._total = total
        self._count = count
        return o

    def _run_udp(self, data: bytes, view: memoryview, o: int, n: int) -> int:
        """The fast path: equal-size datagrams continuing the open run in this buffer."""
        size = self._size
        fixed = self._head[:46]
        mss = size - 48
        total = self._total
        count = self._count
        append = self._parts.append
        starts = data.startswith
        limit = MAX_PAYLOAD - UDP_LEN - mss
        while o + size <= n and total <= limit and starts(fixed, o):
            append(view[o + 48 : o + size])
            count += 1
            total += mss
            o += size
        self._total = total
        self._count = count
        return o

    def _tcp_matches(self, data: bytes, o: int, size: int, hl: int, flags: int) -> bool:
        head = self._head
        if hl != len(head) or size > self._size:
            return False
        if size == self._size:
            if data[o : o + 44] != head[:44]:
                return False
        elif data[o : o + 4] != head[:4] or data[o + 6 : o + 44] != head[6:44]:
            return False
        # ACK number, data offset, window, urgent pointer and options; the flags were checked by the caller.
        if data[o + 48 : o + 53] != head[48:53] or data[o + 54 : o + 56] != head[54:56]:
            return False
        return data[o + 58 : o + hl] == head[58:hl]

    def _start(self, kind: int, data: bytes, view: memoryview, o: int, end: int, hl: int, addr: Address) -> None:
        self._kind = kind
        self._addr = addr
        self._head = data[o : o + hl]
        self._size = end - o
        self._mss = end - o - hl
        self._total = end - o - hl
        self._count = 1
        self._parts = [view[o + hl : end]]
        self._source = data
        self._offset = o
        self._end = end
        self._psh = False

    def flush(self, out: Datagrams) -> None:
        """End the current run, appending its packet to ``out``."""
        kind = self._kind
        if not kind:
            return
        self._kind = 0
        addr = self._addr
        assert addr is not None
        head = self._head
        source = self._source
        self._source = b""
        if self._count == 1:
            o, end = self._offset, self._end
            out.append((source if end - o == len(source) else source[o:end], addr))
            self._parts = []
            return
        hl = len(head)
        header = bytearray(head)
        l4 = hl - IPV6_LEN + self._total
        _U16.pack_into(header, 4, l4)
        if kind == PROTO_TCP:
            if self._psh:
                # PSH came with the last segment: the kernel puts it back there when it splits the packet.
                header[IPV6_LEN + 13] |= PSH
            gso = GSO_TCPV6
            check = TCP_CHECK
        else:
            _U16.pack_into(header, 44, l4)
            gso = GSO_UDP_L4
            check = UDP_CHECK
        _U16.pack_into(header, IPV6_LEN + check, pseudo_partial(header, kind, l4))
        self._parts.insert(0, memoryview(header))
        packet = GsoPacket(b"".join(self._parts))
        self._parts = []
        packet.vnet = VNET_HDR.pack(F_NEEDS_CSUM, gso, hl, self._mss, IPV6_LEN, check)
        packet.segments = self._count
        packet.overhead = hl
        self.merged_packets += 1
        self.merged_segments += self._count
        out.append((packet, addr))
