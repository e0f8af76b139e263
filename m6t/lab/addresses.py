"""Addresses, host names and interface names of the standard lab, and the ranges any lab may use.

Only documentation ranges (RFC 5737) and ULAs (RFC 4193) are allowed, so that a mistake in a lab can never
send traffic to a real network even if it leaked out of its namespaces.
"""

from __future__ import annotations

import ipaddress

# Any lab address (interface address, route destination or next hop) must fall in one of these.
ALLOWED_IPV4 = tuple(ipaddress.IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))
ALLOWED_IPV6 = (ipaddress.IPv6Network("fd00::/8"),)

# Host names of the standard lab (the keys accepted by Lab.ns, Lab.run, ...).
MN = "mn"
NAT1 = "nat1"
NAT2 = "nat2"
GW = "gw"
GW2 = "gw2"
HA_HOST = "ha"
WAN2 = "wan2"
WAN_SWITCH = "wan"

# Networks.
LAN1 = "192.0.2.0/24"
LAN2 = "203.0.113.0/24"
WAN = "198.51.100.0/24"
HA_LINK = "fd00:ab::/64"
HA_LINK2 = "fd00:ac::/64"
M6T_PREFIX = "fd6d:3674:a1b2::/48"

# WAN side.
GW_WAN = "198.51.100.2"
GW2_WAN = "198.51.100.3"
NAT1_WAN = "198.51.100.11"
NAT2_WAN = "198.51.100.12"
WAN2_ADDR = "198.51.100.66"

# NATed LANs.
NAT1_LAN = "192.0.2.1"
NAT2_LAN = "203.0.113.1"
MN_LAN1 = "192.0.2.10"
MN_LAN1_ALT = "192.0.2.20"
MN_LAN2 = "203.0.113.10"
MN_LAN2_ALT = "203.0.113.20"

# Home Agent link.
HA = "fd00:ab::1"
GW_HA_SIDE = "fd00:ab::2"
GW2_HA_SIDE = "fd00:ac::2"
HA_ON_LINK2 = "fd00:ac::1"

# Interface names (each lives inside its host's namespace, so names repeat across hosts).
MN_IF_LAN1 = "lan1"
MN_IF_LAN2 = "lan2"
NAT_IF_LAN = "lan0"
NAT_IF_WAN = "wan0"
GW_IF_WAN = "wan0"
GW_IF_HA = "halink"
HA_IF = "halink"
HA_IF2 = "halink2"
WAN2_IF = "wan0"


def is_lab_address(address: str) -> bool:
    """True when an address or network (with or without a prefix length) lies inside the allowed ranges."""
    try:
        network = ipaddress.ip_network(address, strict=False)
    except ValueError:
        return False
    if isinstance(network, ipaddress.IPv4Network):
        return any(network.subnet_of(allowed) for allowed in ALLOWED_IPV4)
    return any(network.subnet_of(allowed) for allowed in ALLOWED_IPV6)
