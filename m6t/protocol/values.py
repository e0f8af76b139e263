"""The small value types every layer shares: a connectivity snapshot, a route, PMTU evidence, a merged packet.

They sit here, below the client and gateway cores and the platform backends, so that the cores can speak
of them without importing the platform interface (the arrows point down only: see ``shared/DESIGN.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Network


class MergedPacket(bytes):
    """One well-formed IPv6 packet that stands for ``segments`` packets of one flow on the wire.

    Backends with segmentation offloads may hand these up from the TUN (a TCP "super-packet" the OS did not
    segment) and out of a UDP channel (consecutive segments of one flow merged, to be written to the OS in
    one go); and they take them back through ``UdpChannel.send`` and ``TunDevice.write``, where they split
    them again as needed.  Everything above the platform checks its IPv6 header like any packet's (all the
    packets it stands for share their addresses and ports); only byte and packet counters care:
    ``segments - 1`` further packets, each repeating ``overhead`` header bytes (see :func:`wire_size`).
    Other backends never make them.
    """

    segments: int
    overhead: int


def wire_size(packet: bytes) -> tuple[int, int]:
    """Packets and bytes ``packet`` stands for on the wire: itself, or the segments of a merged packet."""
    if isinstance(packet, MergedPacket):
        return packet.segments, len(packet) + (packet.segments - 1) * packet.overhead
    return 1, len(packet)


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
    source: IPv6Network | None = None
    """Only for packets from this source (a source-specific route): one tunnel of several keeps what is sent
    from its own address (``tunnel.uplinks = "all"``) where the OS would otherwise pick the primary's route."""


@dataclass(frozen=True, slots=True)
class PmtuEvidence:
    """Proof that a packet of ours did not fit: the kernel's or a router's word, quoting our flow."""

    mtu: int
    """The IPv4 path MTU reported (0 if unknown, e.g. a bare EMSGSIZE)."""
    source: str
    """``"icmp"`` for a quoted ICMP fragmentation-needed, ``"emsgsize"`` for a local send failure."""
    quoted: bytes = b""
    """What the ICMP error quotes of our datagram past its UDP header (the tunnel's IPv6 packet, as much as the
    router sent back), when the OS hands it over: it tells which probe did not fit."""
