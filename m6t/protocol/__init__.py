"""The m6t protocol, pure: addressing, IPv6 header checks, the keepalive, ICMP parsing.

Standard library only, no I/O, no clock reads: every function is fed bytes and values.
"""

from m6t.protocol.addressing import (
    AddressingError,
    SuffixAllocator,
    check_prefix80,
    eui64_from_mac,
    generate_ula_prefix,
    parse_prefix80,
    prefix80_from_parts,
    random_suffix,
    split_prefix80,
    suffix_of,
    tunnel_address,
)
from m6t.protocol.constants import (
    DEFAULT_MTU,
    IPV6_HEADER_LEN,
    IPV6_MIN_MTU,
    KEEPALIVE_INTERVAL_S,
    KEEPALIVE_PEER,
    MAX_TUNNEL_MTU,
    NEXT_HEADER_NONE,
    UDP_IPV4_OVERHEAD,
)
from m6t.protocol.errors import PacketError, Reason
from m6t.protocol.icmp import (
    EchoReply,
    FragNeeded,
    QuotedFlow,
    build_echo_request,
    parse_echo_reply,
    parse_frag_needed_icmp,
    parse_frag_needed_packet,
)
from m6t.protocol.ipv6 import IPv6Header, build_ipv6_header, ipv6_problem, parse_ipv6
from m6t.protocol.keepalive import (
    build_keepalive,
    build_keepalive_reply,
    is_keepalive_reply,
    is_keepalive_request,
)

__all__ = [
    "DEFAULT_MTU",
    "IPV6_HEADER_LEN",
    "IPV6_MIN_MTU",
    "KEEPALIVE_INTERVAL_S",
    "KEEPALIVE_PEER",
    "MAX_TUNNEL_MTU",
    "NEXT_HEADER_NONE",
    "UDP_IPV4_OVERHEAD",
    "AddressingError",
    "EchoReply",
    "FragNeeded",
    "IPv6Header",
    "PacketError",
    "QuotedFlow",
    "Reason",
    "SuffixAllocator",
    "build_echo_request",
    "build_ipv6_header",
    "build_keepalive",
    "build_keepalive_reply",
    "check_prefix80",
    "eui64_from_mac",
    "generate_ula_prefix",
    "ipv6_problem",
    "is_keepalive_reply",
    "is_keepalive_request",
    "parse_echo_reply",
    "parse_frag_needed_icmp",
    "parse_frag_needed_packet",
    "parse_ipv6",
    "parse_prefix80",
    "prefix80_from_parts",
    "random_suffix",
    "split_prefix80",
    "suffix_of",
    "tunnel_address",
]
