"""The client session's status snapshot and its counters.

Times inside the session are the driver's monotonic clock; the control API turns them into Unix times
for display (``m6t.client.api.wire``), so the session itself never reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address

from m6t.client.gateways import Candidate
from m6t.client.vocabulary import State
from m6t.protocol.values import Attachment


class Drop(StrEnum):
    """Why a packet was dropped; the values are the counter names."""

    # UDP → TUN
    FOREIGN_SOURCE = "foreign_source"
    """Not from the gateway address and port in use."""
    TOO_SHORT = "too_short"
    NOT_IPV6 = "not_ipv6"
    LENGTH_MISMATCH = "length_mismatch"
    NOT_OUR_ADDRESS = "not_our_address"
    """An IPv6 destination other than the current tunnel address (e.g. a suffix we left)."""
    LINK_LOCAL_SOURCE = "link_local_source"
    """From a link-local source but not a keepalive reply: nothing legitimate looks like that."""
    # TUN → UDP
    NO_PATH = "no_path"
    """No socket toward the gateway right now (no network, or disconnected)."""
    NOT_OUR_SOURCE = "not_our_source"
    """The OS sent from another address (link-local RS/MLD, or a suffix we just left)."""
    MULTICAST = "multicast"


class Counters:
    """Plain ints bumped on the per-packet path; drops are rare enough for a dict."""

    __slots__ = (
        "drops_in",
        "drops_out",
        "keepalive_replies",
        "keepalives_sent",
        "probe_replies",
        "probes_sent",
        "rx_bytes",
        "rx_packets",
        "tx_bytes",
        "tx_packets",
    )

    def __init__(self) -> None:
        self.tx_packets = 0
        self.tx_bytes = 0
        self.rx_packets = 0
        self.rx_bytes = 0
        self.keepalives_sent = 0
        self.keepalive_replies = 0
        self.probes_sent = 0
        self.probe_replies = 0
        self.drops_in: dict[str, int] = {}
        self.drops_out: dict[str, int] = {}

    def drop_in(self, reason: str, packets: int = 1) -> None:
        self.drops_in[reason] = self.drops_in.get(reason, 0) + packets

    def drop_out(self, reason: str, packets: int = 1) -> None:
        self.drops_out[reason] = self.drops_out.get(reason, 0) + packets

    def fingerprint(self) -> tuple[int, ...]:
        """Cheap change detection for the periodic counters event."""
        return (
            self.tx_packets,
            self.rx_packets,
            self.keepalives_sent,
            self.keepalive_replies,
            self.probes_sent,
            sum(self.drops_in.values()),
            sum(self.drops_out.values()),
        )

    def to_dict(self) -> dict[str, int]:
        """Flat ``name: int``; drops appear as ``rx_drop_<reason>`` (from the gateway side) and
        ``tx_drop_<reason>`` (from the TUN side)."""
        flat = {
            "tx_packets": self.tx_packets,
            "tx_bytes": self.tx_bytes,
            "rx_packets": self.rx_packets,
            "rx_bytes": self.rx_bytes,
            "keepalives_sent": self.keepalives_sent,
            "keepalive_replies": self.keepalive_replies,
            "probes_sent": self.probes_sent,
            "probe_replies": self.probe_replies,
            "rx_dropped": sum(self.drops_in.values()),
            "tx_dropped": sum(self.drops_out.values()),
        }
        flat.update((f"rx_drop_{reason}", n) for reason, n in self.drops_in.items())
        flat.update((f"tx_drop_{reason}", n) for reason, n in self.drops_out.items())
        return flat


@dataclass(frozen=True, slots=True)
class Regeneration:
    time: float
    reason: str
    old: IPv6Address | None
    new: IPv6Address | None


@dataclass(frozen=True, slots=True)
class MtuEvidence:
    source: str
    path_mtu: int
    time: float


@dataclass(frozen=True, slots=True)
class MtuSearchStatus:
    """Path MTU discovery on the tunnel (RFC 8899): where it stands and what the last search found."""

    state: str
    """A :class:`~m6t.client.pmtud.PmtudState` value."""
    mtu: int | None
    """The searched tunnel MTU (``None``: no search finished on this path yet)."""
    found: str | None
    """How: ``probe``, ``icmp``, ``emsgsize`` or ``floor`` (:class:`~m6t.client.pmtud.Found`)."""
    time: float | None
    """When that search ended."""
    probes: int
    """Probes that search sent."""
    duration: float | None
    fragmentation: bool
    """The path carries under 1308 bytes: 1280 is kept and larger packets cross as DF-clear fragments."""
    next_search: float | None
    """When the raise timer searches upwards again."""
    probes_total: int


@dataclass(frozen=True, slots=True)
class KeepaliveStatus:
    interval: float
    last_sent: float | None
    last_reply: float | None
    rtt: float | None
    missed: int
    counting: bool
    """False while unconfirmed: the gateway cannot answer yet, so silence means nothing."""


@dataclass(frozen=True, slots=True)
class Status:
    now: float | None
    """When the snapshot was taken (for ages), if the caller said."""
    state: State
    detail: str
    since: float | None
    attachment: Attachment | None
    gateway_host: str
    gateway_address: IPv4Address | None
    gateway_port: int
    ports: tuple[int, ...]
    address: IPv6Address | None
    confirmed: bool
    mtu_configured: int
    mtu_effective: int
    mtu_evidence: MtuEvidence | None
    keepalive: KeepaliveStatus
    probe: IPv6Address | None
    counters: dict[str, int]
    regenerations: tuple[Regeneration, ...]
    failures: int
    retry_at: float | None
    mtu_search: MtuSearchStatus | None = None
    """``None`` when path MTU discovery is off (``tunnel.pmtud = false``, or no probe address)."""
    gateways: tuple[Candidate, ...] = ()
    """Every gateway address known, in order of preference (``gateway_address`` is the one in use)."""
    gateways_dead: tuple[Candidate, ...] = ()
    """Those that answered on none of their ports since the last confirmation."""
