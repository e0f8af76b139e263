from __future__ import annotations

import contextlib
import struct
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m6t.protocol import (
    KEEPALIVE_PEER,
    PacketError,
    Reason,
    build_echo_request,
    build_ipv6_header,
    build_keepalive,
    build_keepalive_reply,
    ipv6_problem,
    is_keepalive_reply,
    is_keepalive_request,
    parse_echo_reply,
    parse_frag_needed_icmp,
    parse_frag_needed_packet,
    parse_ipv6,
)
from m6t.protocol.icmp import internet_checksum

MN = IPv6Address("fd6d:3674:a1b2:0:1:123:4567:89ab").packed
HA = IPv6Address("fd00:ab::1").packed


def test_header_fields_are_read_from_the_buffer() -> None:
    packet = build_ipv6_header(MN, HA, 17, 4, hop_limit=9) + b"abcd"
    header = parse_ipv6(packet)
    assert (header.payload_length, header.next_header, header.hop_limit) == (4, 17, 9)
    assert header.src == MN and header.dst == HA
    assert header.dst_address == IPv6Address("fd00:ab::1")
    assert bytes(header.payload) == b"abcd"


def test_view_does_not_copy() -> None:
    packet = bytearray(build_ipv6_header(MN, HA, 59, 0))
    header = parse_ipv6(packet)
    packet[7] = 3
    assert header.hop_limit == 3


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (b"", Reason.TOO_SHORT),
        (b"\x60" * 39, Reason.TOO_SHORT),
        (b"\x40" + bytes(39), Reason.NOT_IPV6),
        (build_ipv6_header(MN, HA, 59, 1), Reason.LENGTH_MISMATCH),
        (build_ipv6_header(MN, HA, 59, 0) + b"x", Reason.LENGTH_MISMATCH),
    ],
)
def test_every_rejection_reason(packet: bytes, reason: Reason) -> None:
    assert ipv6_problem(packet) is reason
    with pytest.raises(PacketError) as info:
        parse_ipv6(packet)
    assert info.value.reason is reason


@given(st.binary(max_size=200))
def test_ipv6_parser_never_raises_anything_else(data: bytes) -> None:
    with contextlib.suppress(PacketError):
        parse_ipv6(data)


def test_keepalive_bytes_exact() -> None:
    keepalive = build_keepalive(MN)
    expected = bytes.fromhex("6000000000003b40") + MN + bytes.fromhex("fe800000000000000000000000000001")
    assert keepalive == expected
    assert len(keepalive) == 40
    assert is_keepalive_request(keepalive)
    assert not is_keepalive_reply(keepalive, MN)


def test_keepalive_reply_reverses_addresses_and_is_not_larger() -> None:
    request = build_keepalive(MN)
    reply = build_keepalive_reply(parse_ipv6(request))
    assert len(reply) <= len(request)
    assert reply[8:24] == KEEPALIVE_PEER and reply[24:40] == MN
    assert is_keepalive_reply(reply, MN)
    assert not is_keepalive_reply(reply, HA)
    assert not is_keepalive_request(reply)


@pytest.mark.parametrize(
    "packet",
    [
        build_ipv6_header(MN, KEEPALIVE_PEER, 58, 0),  # upper layer present
        build_ipv6_header(MN, KEEPALIVE_PEER, 59, 1) + b"x",  # carries a payload
        build_ipv6_header(MN, HA, 59, 0),  # not to fe80::1
        b"\x40" + build_keepalive(MN)[1:],  # not IPv6
    ],
)
def test_not_a_keepalive(packet: bytes) -> None:
    assert not is_keepalive_request(packet)


@given(st.binary(max_size=80))
def test_keepalive_recognisers_never_raise(data: bytes) -> None:
    is_keepalive_request(data)
    is_keepalive_reply(data, MN)


def _ipv4_header(src: str, dst: str, proto: int, total: int, ihl_words: int = 5) -> bytes:
    options = bytes((ihl_words - 5) * 4)
    return (
        struct.pack(
            "!BBHHHBBH4s4s", 0x40 | ihl_words, 0, total, 1, 0, 64, proto, 0,
            IPv4Address(src).packed, IPv4Address(dst).packed,
        )
        + options
    )  # fmt: skip


def _frag_needed(mtu: int, quoted: bytes) -> bytes:
    return bytes((3, 4, 0, 0, 0, 0)) + mtu.to_bytes(2, "big") + quoted


def test_frag_needed_extracts_mtu_and_quoted_flow() -> None:
    quoted = _ipv4_header("192.0.2.10", "198.51.100.2", 17, 1500) + struct.pack("!HHHH", 40000, 3544, 1480, 0)
    message = _frag_needed(1400, quoted)
    parsed = parse_frag_needed_icmp(message)
    assert parsed.next_hop_mtu == 1400
    assert parsed.quoted_total_length == 1500
    assert parsed.matches(IPv4Address("192.0.2.10"), 40000, IPv4Address("198.51.100.2"), 3544)
    assert not parsed.matches(IPv4Address("192.0.2.10"), 40001, IPv4Address("198.51.100.2"), 3544)
    outer = _ipv4_header("192.0.2.1", "192.0.2.10", 1, 20 + len(message)) + message
    assert parse_frag_needed_packet(outer) == parsed


def test_frag_needed_honours_quoted_ip_options() -> None:
    quoted = _ipv4_header("192.0.2.10", "198.51.100.2", 17, 1500, ihl_words=6) + struct.pack("!HHHH", 1, 2, 8, 0)
    assert parse_frag_needed_icmp(_frag_needed(1300, quoted)).quoted.dport == 2


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"\x03\x04", Reason.TOO_SHORT),
        (bytes((3, 3, 0, 0, 0, 0, 5, 0)) + bytes(28), Reason.NOT_FRAG_NEEDED),
        (_frag_needed(1400, b"\x45" + bytes(10)), Reason.TOO_SHORT),
        (_frag_needed(1400, b"\x65" + bytes(27)), Reason.NOT_IPV4),
        (_frag_needed(1400, b"\x4f" + bytes(27)), Reason.BAD_IPV4_HEADER),
        (_frag_needed(1400, _ipv4_header("192.0.2.10", "198.51.100.2", 6, 60) + bytes(8)), Reason.NOT_UDP),
        (_frag_needed(1400, _ipv4_header("192.0.2.10", "198.51.100.2", 17, 60) + bytes(4)), Reason.QUOTE_TOO_SHORT),
    ],
)
def test_frag_needed_rejections(message: bytes, reason: Reason) -> None:
    with pytest.raises(PacketError) as info:
        parse_frag_needed_icmp(message)
    assert info.value.reason is reason


def test_frag_needed_packet_must_carry_icmp() -> None:
    with pytest.raises(PacketError) as info:
        parse_frag_needed_packet(_ipv4_header("192.0.2.1", "192.0.2.10", 17, 28) + bytes(8))
    assert info.value.reason is Reason.NOT_ICMP


@given(st.binary(max_size=120))
def test_icmp_parsers_never_raise_anything_else(data: bytes) -> None:
    for parser in (parse_frag_needed_icmp, parse_frag_needed_packet, parse_echo_reply):
        with contextlib.suppress(PacketError):
            parser(data)


def test_internet_checksum_known_vector() -> None:
    # RFC 1071 section 3 example: the sum of these words is 0xddf2, so the checksum is its complement
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0xFFFF - 0xDDF2


def _as_reply(request: bytes) -> bytes:
    """What a peer answers: addresses swapped, type 129, checksum recomputed."""
    src, dst, body = request[8:24], request[24:40], bytearray(request[40:])
    body[0], body[2], body[3] = 129, 0, 0
    pseudo = dst + src + len(body).to_bytes(4, "big") + b"\x00\x00\x00\x3a"
    body[2:4] = internet_checksum(pseudo + bytes(body)).to_bytes(2, "big")
    return build_ipv6_header(dst, src, 58, len(body)) + bytes(body)


def test_echo_request_is_valid_and_reply_parses() -> None:
    request = build_echo_request(MN, HA, 0x1234, 7, data=b"m6t-probe")
    header = parse_ipv6(request)
    assert header.next_header == 58 and bytes(header.payload)[0] == 128
    pseudo = MN + HA + header.payload_length.to_bytes(4, "big") + b"\x00\x00\x00\x3a"
    assert internet_checksum(pseudo + bytes(header.payload)) == 0
    reply = parse_echo_reply(_as_reply(request))
    assert (reply.src, reply.dst, reply.ident, reply.seq) == (HA, MN, 0x1234, 7)


def test_echo_reply_with_bad_checksum_is_rejected() -> None:
    reply = bytearray(_as_reply(build_echo_request(MN, HA, 1, 1)))
    reply[-1] ^= 0xFF
    reply[-2] ^= 0x01
    with pytest.raises(PacketError) as info:
        parse_echo_reply(bytes(reply))
    assert info.value.reason is Reason.BAD_CHECKSUM
