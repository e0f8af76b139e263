"""m6t addressing (draft 2.2): the ULA /48, the per-MN /80 and the random 48-bit suffix.

    | /48 ULA prefix | 16-bit subnet ID | 16-bit MN ID | 48 random bits |

The MN is configured with the /80 (or with its parts) and draws a fresh suffix at every change of
IPv4 attachment, so a new binding at the gateway can never be confused with an old one (draft 6.1.1).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from ipaddress import IPv6Address, IPv6Network
from typing import Final

SUFFIX_BITS: Final = 48
SUFFIX_MASK: Final = (1 << SUFFIX_BITS) - 1
PREFIX80_LEN: Final = 80

_ULA_FC00_7: Final = IPv6Network("fc00::/7")
_NTP_EPOCH_OFFSET: Final = 2_208_988_800
"""Seconds from 1900-01-01 (NTP era 0) to 1970-01-01 (Unix epoch)."""

RandomBytes = Callable[[int], bytes]


class AddressingError(ValueError):
    """A prefix, identifier or suffix that m6t cannot use; the message says which and why."""


def ntp_timestamp(unix_time: float) -> bytes:
    """The 64-bit NTP format of a Unix time (RFC 5905): 32 bits of seconds, 32 of fraction."""
    if unix_time < 0:
        raise AddressingError(f"time {unix_time} is before 1970")
    seconds = int(unix_time)
    fraction = int((unix_time - seconds) * (1 << 32)) & 0xFFFFFFFF
    return (((seconds + _NTP_EPOCH_OFFSET) & 0xFFFFFFFF) << 32 | fraction).to_bytes(8, "big")


def eui64_from_mac(mac: bytes) -> bytes:
    """The modified EUI-64 of a 48-bit MAC (RFC 4291 appendix A): ff:fe inserted, U/L bit flipped."""
    if len(mac) != 6:
        raise AddressingError(f"a MAC address has 6 bytes, not {len(mac)}")
    return bytes([mac[0] ^ 0x02]) + mac[1:3] + b"\xff\xfe" + mac[3:]


def generate_ula_prefix(unix_time: float, eui64: bytes) -> IPv6Network:
    """A locally assigned ULA /48 by RFC 4193 section 3.2.2.

    SHA-1 over the 64-bit NTP time and an EUI-64; the least significant 40 bits of the digest
    become the Global ID behind fd00::/8.  The caller supplies the clock reading and the EUI-64
    (e.g. :func:`eui64_from_mac` of a local interface) so this stays free of I/O.
    """
    if len(eui64) != 8:
        raise AddressingError(f"an EUI-64 has 8 bytes, not {len(eui64)}")
    digest = hashlib.sha1(ntp_timestamp(unix_time) + eui64, usedforsecurity=False).digest()
    global_id = int.from_bytes(digest[-5:], "big")
    value = (0xFD << 120) | (global_id << 80)
    return IPv6Network((value, 48))


def is_ula(network: IPv6Network) -> bool:
    return network.subnet_of(_ULA_FC00_7)


def prefix80_from_parts(ula48: IPv6Network, subnet_id: int, mn_id: int) -> IPv6Network:
    """Compose the /80 an MN is configured with: ULA /48 | subnet ID | MN ID (draft 2.2)."""
    if ula48.prefixlen != 48:
        raise AddressingError(f"{ula48} is a /{ula48.prefixlen}; the ULA prefix must be a /48")
    if not is_ula(ula48):
        raise AddressingError(f"{ula48} is not a Unique Local prefix (fc00::/7)")
    for label, value in (("subnet ID", subnet_id), ("MN ID", mn_id)):
        if not 0 <= value <= 0xFFFF:
            raise AddressingError(f"{label} {value} is not a 16-bit value (0..65535)")
    value = int(ula48.network_address) | (subnet_id << 64) | (mn_id << 48)
    return IPv6Network((value, PREFIX80_LEN))


def split_prefix80(prefix: IPv6Network) -> tuple[IPv6Network, int, int]:
    """The /48, subnet ID and MN ID of a /80 (meaningful for ULA-shaped prefixes)."""
    check_prefix80(prefix)
    value = int(prefix.network_address)
    ula48 = IPv6Network((value >> 80 << 80, 48))
    return ula48, (value >> 64) & 0xFFFF, (value >> 48) & 0xFFFF


def check_prefix80(prefix: IPv6Network) -> IPv6Network:
    """Accept any /80 with no host bits: ULA-based or admin-chosen (draft 2.2, last paragraph)."""
    if prefix.prefixlen != PREFIX80_LEN:
        raise AddressingError(f"{prefix} is a /{prefix.prefixlen}; the m6t prefix must be a /80")
    if prefix.network_address.is_multicast or prefix.network_address.is_link_local:
        raise AddressingError(f"{prefix} is multicast or link-local; it cannot address a tunnel")
    return prefix


def parse_prefix80(text: str) -> IPv6Network:
    """Parse ``"fd6d:3674:a1b2:0:1::/80"``; host bits set or a length other than /80 is an error."""
    try:
        network = IPv6Network(text, strict=True)
    except ValueError as exc:
        raise AddressingError(f"{text!r} is not an IPv6 prefix: {exc}") from None
    return check_prefix80(network)


def random_suffix(random_bytes: RandomBytes = secrets.token_bytes) -> int:
    """A fresh 48-bit suffix from a CSPRNG; never zero, so the address is never the /80 itself."""
    for _ in range(64):
        suffix = int.from_bytes(random_bytes(6), "big") & SUFFIX_MASK
        if suffix:
            return suffix
    raise AddressingError("the random source returned only zeros")


def tunnel_address(prefix: IPv6Network, suffix: int) -> IPv6Address:
    """The tunnel address: the /80 followed by the 48-bit suffix."""
    check_prefix80(prefix)
    if not 0 < suffix <= SUFFIX_MASK:
        raise AddressingError(f"suffix {suffix:#x} is not a non-zero 48-bit value")
    return IPv6Address(int(prefix.network_address) | suffix)


def suffix_of(address: IPv6Address) -> int:
    return int(address) & SUFFIX_MASK


class SuffixAllocator:
    """Distinct suffixes for several tunnel interfaces sharing one /80 (draft 2.5).

    One allocator per host: each interface asks it for its suffix and gives the old one back,
    so no two interfaces ever hold the same address.
    """

    def __init__(self, random_bytes: RandomBytes = secrets.token_bytes) -> None:
        self._random_bytes = random_bytes
        self._in_use: dict[IPv6Network, set[int]] = {}

    def allocate(self, prefix: IPv6Network) -> int:
        taken = self._in_use.setdefault(check_prefix80(prefix), set())
        for _ in range(64):
            suffix = random_suffix(self._random_bytes)
            if suffix not in taken:
                taken.add(suffix)
                return suffix
        raise AddressingError("could not draw an unused suffix: the random source repeats itself")

    def release(self, prefix: IPv6Network, suffix: int) -> None:
        self._in_use.get(prefix, set()).discard(suffix)

    def in_use(self, prefix: IPv6Network) -> frozenset[int]:
        return frozenset(self._in_use.get(prefix, ()))
