"""The m6t keepalive (draft 2.3): an empty IPv6 packet (next header 59) to or from fe80::1."""

from __future__ import annotations

from m6t.protocol.constants import IPV6_HEADER_LEN, KEEPALIVE_PEER, NEXT_HEADER_NONE
from m6t.protocol.ipv6 import Buffer, IPv6Header, build_ipv6_header

KEEPALIVE_LEN = IPV6_HEADER_LEN
_HOP_LIMIT = 64


def build_keepalive(tunnel_address: bytes) -> bytes:
    """The MN's request: exactly a 40-byte header, src = tunnel address, dst = fe80::1."""
    return build_ipv6_header(tunnel_address, KEEPALIVE_PEER, NEXT_HEADER_NONE, 0, _HOP_LIMIT)


def build_keepalive_reply(request: IPv6Header) -> bytes:
    """The gateway's answer: the request with its addresses reversed, never larger than it."""
    return build_ipv6_header(KEEPALIVE_PEER, request.src, NEXT_HEADER_NONE, 0, _HOP_LIMIT)


def _is_empty_packet(buf: Buffer) -> bool:
    return len(buf) == KEEPALIVE_LEN and buf[0] >> 4 == 6 and buf[4] == 0 and buf[5] == 0 and buf[6] == NEXT_HEADER_NONE


def is_keepalive_request(buf: Buffer) -> bool:
    """A 40-byte IPv6 packet with next header 59 addressed to fe80::1."""
    return _is_empty_packet(buf) and bytes(buf[24:40]) == KEEPALIVE_PEER


def is_keepalive_reply(buf: Buffer, tunnel_address: bytes) -> bool:
    """The gateway's reply to our keepalive: from fe80::1, to our tunnel address, next header 59."""
    return _is_empty_packet(buf) and bytes(buf[8:24]) == KEEPALIVE_PEER and bytes(buf[24:40]) == tunnel_address
