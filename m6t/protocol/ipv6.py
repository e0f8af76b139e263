"""A zero-copy view of an IPv6 header, validated against the datagram that carried it."""

from __future__ import annotations

from ipaddress import IPv6Address

from m6t.protocol.constants import IPV6_HEADER_LEN
from m6t.protocol.errors import PacketError, Reason

Buffer = bytes | bytearray | memoryview


class IPv6Header:
    """The fixed IPv6 header at the start of ``buf``; fields are read lazily from the buffer.

    Build it with :func:`parse_ipv6`, which guarantees the header is complete, the version is 6
    and the payload length matches the buffer exactly (a tunnel datagram holds one packet).
    """

    __slots__ = ("_view",)

    def __init__(self, view: memoryview) -> None:
        self._view = view

    @property
    def buffer(self) -> memoryview:
        return self._view

    @property
    def traffic_class(self) -> int:
        v = self._view
        return ((v[0] & 0x0F) << 4) | (v[1] >> 4)

    @property
    def payload_length(self) -> int:
        v = self._view
        return (v[4] << 8) | v[5]

    @property
    def next_header(self) -> int:
        return self._view[6]

    @property
    def hop_limit(self) -> int:
        return self._view[7]

    @property
    def src(self) -> bytes:
        return bytes(self._view[8:24])

    @property
    def dst(self) -> bytes:
        return bytes(self._view[24:40])

    @property
    def src_address(self) -> IPv6Address:
        return IPv6Address(self.src)

    @property
    def dst_address(self) -> IPv6Address:
        return IPv6Address(self.dst)

    @property
    def payload(self) -> memoryview:
        return self._view[IPV6_HEADER_LEN:]

    def __len__(self) -> int:
        return len(self._view)


def ipv6_problem(buf: Buffer) -> Reason | None:
    """Why ``buf`` is not exactly one well-formed IPv6 packet, or ``None`` if it is.

    The cheap form for per-packet paths, which count drops by reason without raising.
    """
    n = len(buf)
    if n < IPV6_HEADER_LEN:
        return Reason.TOO_SHORT
    if buf[0] >> 4 != 6:
        return Reason.NOT_IPV6
    if ((buf[4] << 8) | buf[5]) + IPV6_HEADER_LEN != n:
        return Reason.LENGTH_MISMATCH
    return None


def parse_ipv6(buf: Buffer) -> IPv6Header:
    """View ``buf`` as one IPv6 packet, or raise :class:`PacketError` saying precisely why not."""
    problem = ipv6_problem(buf)
    if problem is Reason.TOO_SHORT:
        raise PacketError(problem, f"{len(buf)} bytes, an IPv6 header needs {IPV6_HEADER_LEN}")
    if problem is Reason.NOT_IPV6:
        raise PacketError(problem, f"version {buf[0] >> 4}")
    if problem is Reason.LENGTH_MISMATCH:
        declared = (buf[4] << 8) | buf[5]
        raise PacketError(problem, f"payload length {declared} in a {len(buf)}-byte buffer")
    return IPv6Header(memoryview(buf))


def build_ipv6_header(src: bytes, dst: bytes, next_header: int, payload_length: int, hop_limit: int = 64) -> bytes:
    if len(src) != 16 or len(dst) != 16:
        raise ValueError("IPv6 addresses are 16 bytes")
    return b"\x60\x00\x00\x00" + payload_length.to_bytes(2, "big") + bytes((next_header, hop_limit)) + src + dst
