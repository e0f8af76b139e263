"""The single error type every parser in :mod:`m6t.protocol` raises on bad input."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a packet was rejected; the values double as counter names."""

    TOO_SHORT = "too_short"
    NOT_IPV6 = "not_ipv6"
    LENGTH_MISMATCH = "length_mismatch"
    NOT_IPV4 = "not_ipv4"
    BAD_IPV4_HEADER = "bad_ipv4_header"
    NOT_ICMP = "not_icmp"
    NOT_FRAG_NEEDED = "not_frag_needed"
    QUOTE_TOO_SHORT = "quote_too_short"
    NOT_UDP = "not_udp"
    NOT_ECHO = "not_echo"
    BAD_CHECKSUM = "bad_checksum"
    NOT_ACCESS_HEADER = "not_access_header"


class PacketError(ValueError):
    """A buffer is not the packet the caller asked to parse; ``reason`` says precisely why."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
