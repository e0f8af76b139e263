"""Numbers the draft fixes (draft-ebalard-mext-m6t-02)."""

from __future__ import annotations

from typing import Final

DEFAULT_MTU: Final = 1472
"""Tunnel interface MTU on both sides unless an administrator sets another (draft 2.6)."""

IPV6_MIN_MTU: Final = 1280
"""No IPv6 link may be smaller (RFC 8200 section 5); the floor of every MTU we set."""

KEEPALIVE_INTERVAL_S: Final = 30.0
"""Silence after which the MN sends a keepalive (draft 2.3, borrowed from Teredo)."""

IPV6_HEADER_LEN: Final = 40
NEXT_HEADER_NONE: Final = 59
"""IPv6 'No Next Header': the keepalive carries no upper layer (draft 2.3)."""
NEXT_HEADER_ICMPV6: Final = 58

KEEPALIVE_PEER: Final = bytes.fromhex("fe800000000000000000000000000001")
"""fe80::1, the keepalive's destination (request) and source (reply)."""

UDP_IPV4_OVERHEAD: Final = 28
"""Outer IPv4 (20, no options) + UDP (8) header bytes added to each tunnelled packet."""

MAX_TUNNEL_MTU: Final = 65535 - UDP_IPV4_OVERHEAD
"""The largest IPv6 packet one UDP/IPv4 datagram can carry (65507): the ceiling of every tunnel MTU, shared by
the config files and the cores so that a value a file accepts is always one they run with."""
