"""Segmentation, merging and checksums of :mod:`m6t.platform.linux.offload`, against hand-built packets.

Every checksum here is checked with an independent reference (a plain sum of 16-bit words), never with
the module's own arithmetic.  No root needed: pure functions.
"""

from __future__ import annotations

import os
import random
import struct
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m6t.protocol.values import MergedPacket, wire_size

if sys.platform != "linux":
    pytest.skip("Linux backend tests", allow_module_level=True)
assert sys.platform == "linux"  # never fails (skipped above); tells mypy the rest is Linux-only

from m6t.platform.linux import offload  # noqa: E402
from m6t.platform.linux.offload import (  # noqa: E402
    ACK,
    CWR,
    F_NEEDS_CSUM,
    FIN,
    GSO_NONE,
    GSO_TCPV6,
    GSO_UDP_L4,
    PSH,
    VNET_HDR,
    Coalescer,
    GsoPacket,
    complete_checksum,
    datapath_options,
    make_gso_packet,
    ones_sum,
    segment_into,
    split,
)

SRC = bytes.fromhex("fd6d3674a1b20000000112345678abcd")
DST = bytes.fromhex("fd000000000000ab0000000000000001")
TS_OPTIONS = bytes.fromhex("0101080a") + bytes(range(1, 9))
PEER = ("198.51.100.11", 40000)
SYN = 0x02


def reference_sum(data: bytes) -> int:
    """RFC 1071, the obvious way."""
    if len(data) % 2:
        data += b"\0"
    total = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def pseudo(src: bytes, dst: bytes, length: int, proto: int) -> bytes:
    return src + dst + struct.pack("!I3xB", length, proto)


def l4_checksum_ok(packet: bytes) -> bool:
    """A TCP or UDP packet over IPv6 (no extension headers) verifies: its sum, checksum included, is 0xFFFF."""
    l4 = packet[40:]
    assert (packet[4] << 8 | packet[5]) == len(l4), "IPv6 payload length"
    return reference_sum(pseudo(packet[8:24], packet[24:40], len(l4), packet[6]) + l4) == 0xFFFF


def ipv6(proto: int, l4: bytes, *, src: bytes = SRC, dst: bytes = DST, tclass: int = 0, hop: int = 64) -> bytes:
    return struct.pack("!IHBB", 6 << 28 | tclass << 20 | 0x12345, len(l4), proto, hop) + src + dst + l4


def tcp(
    seq: int,
    payload: bytes,
    *,
    flags: int = ACK,
    ack: int = 7000,
    window: int = 502,
    options: bytes = TS_OPTIONS,
    sport: int = 40000,
    partial: bool = False,
    src: bytes = SRC,
    dst: bytes = DST,
    tclass: int = 0,
) -> bytes:
    """A TCP/IPv6 packet with a correct checksum, or (``partial``) the pseudo-header sum a TSO packet has."""
    doff = (20 + len(options)) // 4
    header = struct.pack("!HHIIBBHHH", sport, 5201, seq, ack, doff << 4, flags, window, 0, 0) + options
    l4 = len(header) + len(payload)
    if partial:
        check = reference_sum(pseudo(src, dst, l4, 6))
    else:
        check = ~reference_sum(pseudo(src, dst, l4, 6) + header + payload) & 0xFFFF
    header = header[:16] + struct.pack("!H", check) + header[18:]
    return ipv6(6, header + payload, src=src, dst=dst, tclass=tclass)


def udp(payload: bytes, *, sport: int = 50000, partial: bool = False, dst: bytes = DST) -> bytes:
    l4 = 8 + len(payload)
    header = struct.pack("!HHHH", sport, 5201, l4, 0)
    if partial:
        check = reference_sum(pseudo(SRC, dst, l4, 17))
    else:
        check = ~reference_sum(pseudo(SRC, dst, l4, 17) + header + payload) & 0xFFFF or 0xFFFF
    return ipv6(17, header[:6] + struct.pack("!H", check) + payload, dst=dst)


def super_packet(packet: bytes, gso_type: int, mss: int) -> GsoPacket:
    """What a TUN with TSO/USO hands over: one big packet with a partial checksum, and its header."""
    hl = 40 + ((packet[52] >> 4) * 4 if gso_type == GSO_TCPV6 else 8)
    check = 16 if gso_type == GSO_TCPV6 else 6
    vnet = VNET_HDR.pack(F_NEEDS_CSUM, gso_type, hl, mss, 40, check)
    made = make_gso_packet(packet, vnet)
    assert made is not None
    return made


def layout(packet: GsoPacket) -> list[bytes]:
    out = bytearray(len(packet) + (packet.segments - 1) * packet.overhead)
    total, size = segment_into(packet, out)
    assert total == len(out)
    return [bytes(out[o : min(o + size, total)]) for o in range(0, total, size)]


def gro_buffer(packets: list[bytes]) -> tuple[bytes, int]:
    """Datagrams as one UDP GRO buffer hands them over: equal sizes, the last may be shorter."""
    size = len(packets[0])
    assert all(len(p) == size for p in packets[:-1]) and len(packets[-1]) <= size
    return b"".join(packets), size


def merge(*buffers: tuple[bytes, int], udp: bool = True) -> list[bytes]:
    coalescer = Coalescer(udp=udp)
    out: list[tuple[bytes, tuple[str, int]]] = []
    for data, size in buffers:
        coalescer.feed(data, size, PEER, out)
    coalescer.flush(out)
    assert all(addr == PEER for _, addr in out)
    return [packet for packet, _ in out]


def completed(packet: GsoPacket) -> bytes:
    """The packet as the kernel finishes it from a NEEDS_CSUM header."""
    flags, _gso, _hl, _size, start, offset = VNET_HDR.unpack(packet.vnet)
    assert flags == F_NEEDS_CSUM
    buf = bytearray(packet)
    complete_checksum(buf, len(buf), start, offset)
    return bytes(buf)


# -------------------------------------------------------------------------------------------- checksums


@given(st.binary(max_size=3000))
def test_ones_sum_matches_the_reference(data: bytes) -> None:
    ours = ones_sum(data)
    ref = reference_sum(data)
    assert ours % 0xFFFF == ref % 0xFFFF


def test_complete_checksum_finishes_partial_tcp_and_udp() -> None:
    payload = os.urandom(999)
    for proto, packet, offset in ((6, tcp(5, payload, partial=True), 16), (17, udp(payload, partial=True), 6)):
        buf = bytearray(packet)
        complete_checksum(buf, len(buf), 40, offset)
        assert l4_checksum_ok(bytes(buf)), proto
        assert bytes(buf) == (tcp(5, payload) if proto == 6 else udp(payload))


def test_udp_checksum_is_never_zero() -> None:
    # A payload chosen so that the complemented sum is 0: it must go out as 0xFFFF (0 means "none").
    base = udp(b"\0\0", partial=True)
    target = (0xFFFF - reference_sum(pseudo(SRC, DST, 10, 17) + base[40:46])) & 0xFFFF
    packet = bytearray(udp(target.to_bytes(2, "big"), partial=True))
    complete_checksum(packet, len(packet), 40, 6)
    assert packet[46:48] == b"\xff\xff"
    assert l4_checksum_ok(bytes(packet))


# ----------------------------------------------------------------------------------------- splitting


def test_tcp_super_packet_splits_like_the_kernel() -> None:
    payload = os.urandom(5000)
    big = super_packet(tcp(0xFFFFF000, payload, flags=ACK | PSH | FIN | CWR, partial=True), GSO_TCPV6, 1400)
    assert (big.segments, big.overhead) == (4, 72)
    parts = layout(big)
    assert [len(p) for p in parts] == [1472, 1472, 1472, 72 + 800]
    seqs = [struct.unpack_from("!I", p, 44)[0] for p in parts]
    assert seqs == [0xFFFFF000, 0xFFFFF578, 0xFFFFFAF0, (0xFFFFF000 + 4200) & 0xFFFFFFFF]
    assert [p[53] for p in parts] == [ACK | CWR, ACK, ACK, ACK | PSH | FIN]
    for i, part in enumerate(parts):
        assert l4_checksum_ok(part), i
        assert part[:4] == big[:4] and part[6:40] == big[6:40]
        assert part[48:53] == big[48:53] and part[54:56] == big[54:56] and part[58:72] == big[58:72]
        # Exactly the packet a host would have sent: built independently, with its own checksum.
        chunk = payload[i * 1400 : (i + 1) * 1400]
        assert part == tcp(seqs[i], chunk, flags=part[53]), i
    assert b"".join(p[72:] for p in parts) == payload


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(min_value=2, max_value=64000),
    mss=st.integers(min_value=100, max_value=1440),
    options=st.sampled_from([b"", TS_OPTIONS]),
    flags=st.sampled_from([ACK, ACK | PSH, ACK | FIN | PSH, ACK | CWR]),
    seq=st.integers(min_value=0, max_value=0xFFFFFFFF),
)
def test_any_tcp_split_checksums_and_rejoins(size: int, mss: int, options: bytes, flags: int, seq: int) -> None:
    payload = random.Random(size).randbytes(size)
    packet = tcp(seq, payload, options=options, flags=flags, partial=True)
    made = make_gso_packet(packet, VNET_HDR.pack(F_NEEDS_CSUM, GSO_TCPV6, 60 + len(options), mss, 40, 16))
    if size <= mss:
        assert made is None  # one segment: an ordinary packet (the reader completes its checksum)
        return
    assert made is not None
    parts = layout(made)
    assert len(parts) == made.segments == -(-size // mss)
    assert all(l4_checksum_ok(p) for p in parts)
    hl = 60 + len(options)
    assert b"".join(p[hl:] for p in parts) == payload
    if flags not in (ACK, ACK | PSH):
        return  # FIN, CWR: such segments are never merged
    # ... and merging the wire packets again gives the super-packet back (the checksum field aside).
    [merged] = merge(gro_buffer(parts))
    assert isinstance(merged, GsoPacket)
    assert merged[:56] == packet[:56] and merged[58:] == packet[58:]
    assert merged.segments == made.segments
    assert l4_checksum_ok(completed(merged))
    assert split(merged) == parts


def test_udp_super_packet_splits_into_datagrams() -> None:
    payload = os.urandom(1200 * 5 + 7)
    big = super_packet(udp(payload, partial=True), GSO_UDP_L4, 1200)
    parts = layout(big)
    assert [len(p) for p in parts] == [1248] * 5 + [55]
    for i, part in enumerate(parts):
        assert part == udp(payload[i * 1200 : (i + 1) * 1200]), i
        assert l4_checksum_ok(part)


def test_split_gives_separate_packets() -> None:
    big = super_packet(tcp(1, bytes(3000), partial=True), GSO_TCPV6, 1000)
    assert [len(p) for p in split(big)] == [1072, 1072, 1072]


def test_make_gso_packet_leaves_small_and_unknown_ones_to_the_plain_path() -> None:
    packet = tcp(1, bytes(500), partial=True)
    assert make_gso_packet(packet, VNET_HDR.pack(F_NEEDS_CSUM, GSO_TCPV6, 72, 1400, 40, 16)) is None
    assert make_gso_packet(packet, VNET_HDR.pack(0, GSO_NONE, 0, 0, 0, 0)) is None
    assert make_gso_packet(packet, VNET_HDR.pack(0, 1, 0, 100, 40, 16)) is None  # TCPv4: not ours


# ------------------------------------------------------------------------------------------- merging


def stream(count: int, mss: int = 1400, *, seq: int = 1000, last: int | None = None, **kw: object) -> list[bytes]:
    sizes = [mss] * count
    if last is not None:
        sizes[-1] = last
    out = []
    for size in sizes:
        out.append(tcp(seq, bytes([seq & 0xFF]) * size, **kw))  # type: ignore[arg-type]
        seq += size
    return out


def test_a_gro_buffer_of_one_flow_becomes_one_packet() -> None:
    packets = stream(10, last=300)
    packets[-1] = tcp(1000 + 9 * 1400, bytes([(1000 + 9 * 1400) & 0xFF]) * 300, flags=ACK | PSH)
    [merged] = merge(gro_buffer(packets))
    assert isinstance(merged, GsoPacket) and isinstance(merged, MergedPacket)
    assert (merged.segments, merged.overhead) == (10, 72)
    assert VNET_HDR.unpack(merged.vnet) == (F_NEEDS_CSUM, GSO_TCPV6, 72, 1400, 40, 16)
    assert len(merged) == 72 + 9 * 1400 + 300
    assert merged[53] == ACK | PSH
    assert merged[72:] == b"".join(p[72:] for p in packets)
    # The checksum field holds the pseudo-header sum, as NEEDS_CSUM wants: completing it verifies.
    assert l4_checksum_ok(completed(merged))
    # Splitting it again gives exactly the packets that arrived (what the kernel's GSO does).
    assert split(merged) == packets
    assert wire_size(merged) == (10, len(merged) + 9 * 72) and wire_size(b"x") == (1, 1)


def test_merging_continues_across_buffers_and_stops_at_limits() -> None:
    packets = stream(50)
    merged = merge(gro_buffer(packets[:20]), gro_buffer(packets[20:]))
    # 46 segments of 1400 bytes fit in one IPv6 payload (65535), the 47th starts another packet.
    assert [p.segments for p in merged if isinstance(p, MergedPacket)] == [46, 4]
    assert all(len(p) - 40 <= 65535 for p in merged)
    assert b"".join(p[72:] for p in merged) == b"".join(p[72:] for p in packets)


CHANGES = (
    "ack",
    "window",
    "options",
    "syn",
    "fin",
    "gap",
    "reorder",
    "source",
    "port",
    "tclass",
    "psh-middle",
    "bigger-after-smaller",
    "pure-ack",
    "icmp",
)
SIZE_CHANGES = ("bigger-after-smaller", "pure-ack")
"""Changes that make packets of sizes one GRO buffer could not hold together: separate buffers only."""


@pytest.mark.parametrize(
    ("change", "one_buffer"),
    [(c, False) for c in CHANGES] + [(c, True) for c in CHANGES if c not in SIZE_CHANGES],
)
def test_what_must_not_be_merged_is_not(change: str, one_buffer: bool) -> None:
    a, b, c, d = stream(4)
    seq_c = 1000 + 2 * 1400
    tweaks = {
        "ack": lambda: tcp(seq_c, c[72:], ack=1),
        "window": lambda: tcp(seq_c, c[72:], window=1),
        "options": lambda: tcp(seq_c, c[72:], options=TS_OPTIONS[:-1] + b"\x09"),
        "syn": lambda: tcp(seq_c, c[72:], flags=ACK | SYN),
        "fin": lambda: tcp(seq_c, c[72:], flags=ACK | FIN),
        "gap": lambda: tcp(seq_c + 1, c[72:]),
        "reorder": lambda: d,
        "source": lambda: tcp(seq_c, c[72:], src=SRC[:-1] + b"\x00"),
        "port": lambda: tcp(seq_c, c[72:], sport=1),
        "tclass": lambda: tcp(seq_c, c[72:], tclass=4),
        "psh-middle": lambda: c,
        "bigger-after-smaller": lambda: c,
        "pure-ack": lambda: tcp(seq_c, b""),
        "icmp": lambda: ipv6(58, b"\x80\x00" + bytes(1430)),
    }
    third = tweaks[change]()
    first, second = a, b
    if change == "psh-middle":
        second = tcp(1000 + 1400, b[72:], flags=ACK | PSH)
    if change == "bigger-after-smaller":
        second = tcp(1000 + 1400, b[72:-100])
        third = tcp(1000 + 1400 + 1300, c[72:])
    fourth = d if change != "reorder" else c
    if one_buffer:
        # Inside one GRO buffer the merging takes its fast path.
        got = merge(gro_buffer([first, second, third, fourth]))
    else:
        got = merge((first + second, len(first)), (third, len(third)), (fourth, len(fourth)))
    content = b"".join(b"".join(split(p)) if isinstance(p, GsoPacket) else p for p in got)
    assert content == first + second + third + fourth, change
    # The two first always merge; the third never joins them.
    assert isinstance(got[0], GsoPacket) and got[0].segments == 2
    assert len(got) >= 2


def test_other_packets_pass_through_in_order() -> None:
    icmp = ipv6(58, b"\x80\x00" + bytes(62))
    keepalive = ipv6(59, b"")
    buffers = [(icmp, len(icmp)), (keepalive, 40), *[(p, len(p)) for p in stream(3)]]
    got = merge(*buffers)
    assert got[:2] == [icmp, keepalive]
    assert isinstance(got[2], GsoPacket) and got[2].segments == 3


def test_a_lone_segment_stays_the_packet_it_was() -> None:
    [packet] = stream(1)
    got = merge((packet, len(packet)))
    assert got == [packet] and got[0].__class__ is bytes
    # Even inside a GRO buffer of other things.
    ping = ipv6(58, b"\x80\x00" + bytes(1430))
    got = merge(gro_buffer([ping, packet]))
    assert got == [ping, packet]


def test_udp_datagrams_of_one_size_merge_when_allowed() -> None:
    datagrams = [udp(os.urandom(1200)) for _ in range(8)] + [udp(os.urandom(500))]
    [merged] = merge(gro_buffer(datagrams))
    assert isinstance(merged, GsoPacket)
    assert VNET_HDR.unpack(merged.vnet) == (F_NEEDS_CSUM, GSO_UDP_L4, 48, 1200, 40, 6)
    assert merged.segments == 9 and len(merged) == 48 + 8 * 1200 + 500
    assert merged[44:46] == (len(merged) - 40).to_bytes(2, "big")
    assert l4_checksum_ok(completed(merged))
    assert split(merged) == datagrams
    assert merge(gro_buffer(datagrams), udp=False) == datagrams
    other = udp(os.urandom(1200), sport=1)
    assert [p.__class__ is bytes for p in merge(gro_buffer([datagrams[0], datagrams[1], other]))] == [False, True]


def test_datapath_options() -> None:
    assert datapath_options({}) == frozenset({"no-tso"}) if not offload.TSO_BY_DEFAULT else frozenset()
    plain = datapath_options({"M6T_DATAPATH": "plain"})
    assert {"no-vnet", "no-tso", "no-uso", "no-gso", "no-gro"} <= plain
    assert "tso" in datapath_options({"M6T_DATAPATH": "tso, no-gro"})
    assert "no-gro" in datapath_options({"M6T_DATAPATH": "tso, no-gro"})
    assert "no-tso" in datapath_options({"M6T_DATAPATH": "no-vnet,tso"})
    assert datapath_options({"M6T_DATAPATH": "bogus"}) == datapath_options({})
