"""The small value types every layer shares: a connectivity snapshot, a route, PMTU evidence, a merged packet.

They sit here, below the client and gateway cores and the platform backends, so that the cores can speak
of them without importing the platform interface (the arrows point down only: see ``shared/DESIGN.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Network


class MergedPacket(bytes):
    """One well-formed IPv6 packet that stands for ``segments`` packets of one flow on the wire.

    Backends with segmentation offloads may hand these up from the TUN (a TCP "super-packet" the OS did not
    segment) and out of a UDP channel (consecutive segments of one flow merged, to be written to the OS in
    one go); and they take them back through ``UdpChannel.send`` and ``TunDevice.write``, where they split
    them again as needed.  Everything above the platform checks its IPv6 header like any packet's (all the
    packets it stands for share their addresses and ports); only byte and packet counters care:
    ``segments - 1`` further packets, each repeating ``overhead`` header bytes.  Other backends never make
    them.
    """

    segments: int
    overhead: int


def wire_extra(packets: Sequence[bytes]) -> tuple[int, int]:
    """Packets and bytes that ``packets`` stand for on the wire beyond their own number and length."""
    extra = extra_bytes = 0
    for packet in packets:
        if packet.__class__ is not bytes and isinstance(packet, MergedPacket):
            extra += packet.segments - 1
            extra_bytes += (packet.segments - 1) * packet.overhead
    return extra, extra_bytes


@dataclass(frozen=True, slots=True)
class Attachment:
    """Where this host currently reaches the tunnel gateway over IPv4 (a connectivity snapshot)."""

    local_ipv4: IPv4Address
    """The source address the OS picks toward the gateway."""
    interface: str
    """The egress interface name toward the gateway."""
    router: IPv4Address | None = None
    """The next hop toward the gateway, ``None`` when it is on-link."""


@dataclass(frozen=True, slots=True)
class Route:
    network: IPv6Network
    metric: int


@dataclass(frozen=True, slots=True)
class PmtuEvidence:
    """Proof that a packet of ours did not fit: the kernel's or a router's word, quoting our flow."""

    mtu: int
    """The IPv4 path MTU reported (0 if unknown, e.g. a bare EMSGSIZE)."""
    source: str
    """``"icmp"`` for a quoted ICMP fragmentation-needed, ``"emsgsize"`` for a local send failure."""
