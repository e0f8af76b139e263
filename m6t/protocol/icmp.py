"""ICMPv4 'fragmentation needed' (Packet Too Big for IPv4) and ICMPv6 echo, as bytes.

A PTB is only believed when the IPv4+UDP header it quotes is our own flow: the caller compares
:class:`QuotedFlow` with its socket's addresses before touching any MTU (draft 2.6).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from m6t.protocol.constants import NEXT_HEADER_ICMPV6
from m6t.protocol.errors import PacketError, Reason
from m6t.protocol.ipv6 import Buffer, build_ipv6_header, parse_ipv6

ICMP_DEST_UNREACH = 3
ICMP_FRAG_NEEDED = 4
IPPROTO_ICMP = 1
IPPROTO_UDP = 17
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129


@dataclass(frozen=True, slots=True)
class QuotedFlow:
    """The UDP/IPv4 flow a router quoted back to us."""

    src: IPv4Address
    dst: IPv4Address
    sport: int
    dport: int


@dataclass(frozen=True, slots=True)
class FragNeeded:
    """An ICMPv4 type 3 code 4: the next-hop MTU (0 when the router did not say) and the quote."""

    next_hop_mtu: int
    quoted: QuotedFlow
    quoted_total_length: int
    """Total length of the quoted datagram: an upper bound on what did not fit."""

    def matches(self, src: IPv4Address, sport: int, dst: IPv4Address, dport: int) -> bool:
        q = self.quoted
        return q.src == src and q.sport == sport and q.dst == dst and q.dport == dport


def _ipv4_header_len(buf: Buffer, what: str) -> int:
    if len(buf) < 20:
        raise PacketError(Reason.TOO_SHORT, f"{what}: {len(buf)} bytes, an IPv4 header needs 20")
    if buf[0] >> 4 != 4:
        raise PacketError(Reason.NOT_IPV4, f"{what}: version {buf[0] >> 4}")
    ihl = (buf[0] & 0x0F) * 4
    if ihl < 20 or ihl > len(buf):
        raise PacketError(Reason.BAD_IPV4_HEADER, f"{what}: header length {ihl} in {len(buf)} bytes")
    return ihl


def parse_frag_needed_icmp(icmp: Buffer) -> FragNeeded:
    """Parse an ICMPv4 message (starting at the ICMP type byte) as 'fragmentation needed'."""
    if len(icmp) < 8:
        raise PacketError(Reason.TOO_SHORT, f"ICMP: {len(icmp)} bytes, the header needs 8")
    if icmp[0] != ICMP_DEST_UNREACH or icmp[1] != ICMP_FRAG_NEEDED:
        raise PacketError(Reason.NOT_FRAG_NEEDED, f"ICMP type {icmp[0]} code {icmp[1]}")
    mtu = (icmp[6] << 8) | icmp[7]
    quote = icmp[8:]
    ihl = _ipv4_header_len(quote, "quoted header")
    if quote[9] != IPPROTO_UDP:
        raise PacketError(Reason.NOT_UDP, f"quoted protocol {quote[9]}")
    if len(quote) < ihl + 8:
        raise PacketError(Reason.QUOTE_TOO_SHORT, f"{len(quote) - ihl} bytes after the quoted header, UDP needs 8")
    udp = quote[ihl : ihl + 8]
    flow = QuotedFlow(
        src=IPv4Address(bytes(quote[12:16])),
        dst=IPv4Address(bytes(quote[16:20])),
        sport=(udp[0] << 8) | udp[1],
        dport=(udp[2] << 8) | udp[3],
    )
    return FragNeeded(next_hop_mtu=mtu, quoted=flow, quoted_total_length=(quote[2] << 8) | quote[3])


def parse_frag_needed_packet(packet: Buffer) -> FragNeeded:
    """Parse a whole IPv4 packet carrying ICMP (as a raw socket delivers it)."""
    ihl = _ipv4_header_len(packet, "outer header")
    if packet[9] != IPPROTO_ICMP:
        raise PacketError(Reason.NOT_ICMP, f"protocol {packet[9]}")
    return parse_frag_needed_icmp(memoryview(packet)[ihl:])


def internet_checksum(data: Buffer) -> int:
    """RFC 1071 one's-complement sum."""
    raw = bytes(data)
    if len(raw) % 2:
        raw += b"\x00"
    total = sum(int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _icmpv6_checksum(src: bytes, dst: bytes, message: bytes) -> int:
    pseudo = src + dst + len(message).to_bytes(4, "big") + b"\x00\x00\x00" + bytes((NEXT_HEADER_ICMPV6,))
    return internet_checksum(pseudo + message)


def build_echo_request(
    src: bytes, dst: bytes, ident: int, seq: int, *, data: bytes = b"", hop_limit: int = 64
) -> bytes:
    """A complete IPv6 packet carrying an ICMPv6 echo request (used as the reachability probe)."""
    body = bytes((ICMPV6_ECHO_REQUEST, 0, 0, 0)) + ident.to_bytes(2, "big") + seq.to_bytes(2, "big") + data
    checksum = _icmpv6_checksum(src, dst, body)
    body = body[:2] + checksum.to_bytes(2, "big") + body[4:]
    return build_ipv6_header(src, dst, NEXT_HEADER_ICMPV6, len(body), hop_limit) + body


@dataclass(frozen=True, slots=True)
class EchoReply:
    src: bytes
    dst: bytes
    ident: int
    seq: int


def parse_echo_reply(packet: Buffer) -> EchoReply:
    """An IPv6 packet that is exactly an ICMPv6 echo reply (no extension headers), checksum verified."""
    header = parse_ipv6(packet)
    if header.next_header != NEXT_HEADER_ICMPV6:
        raise PacketError(Reason.NOT_ECHO, f"next header {header.next_header}")
    body = bytes(header.payload)
    if len(body) < 8:
        raise PacketError(Reason.TOO_SHORT, f"ICMPv6: {len(body)} bytes, an echo needs 8")
    if body[0] != ICMPV6_ECHO_REPLY or body[1] != 0:
        raise PacketError(Reason.NOT_ECHO, f"ICMPv6 type {body[0]} code {body[1]}")
    if _icmpv6_checksum(header.src, header.dst, body) != 0:
        raise PacketError(Reason.BAD_CHECKSUM, "ICMPv6 checksum does not verify")
    return EchoReply(header.src, header.dst, int.from_bytes(body[4:6], "big"), int.from_bytes(body[6:8], "big"))
