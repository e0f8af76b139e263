"""What the client session tells the world: typed status events.

The helper logs them and the control API streams them to the tray (``m6t.client.api.wire`` decides their
wire shape).  Error events carry a stable numbered code and one sentence a user can act on, so the UI
never has to parse log text.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address

from m6t.client.gateways import Candidate
from m6t.client.vocabulary import ErrorCode, State
from m6t.protocol.values import Attachment


@dataclass(frozen=True, slots=True)
class StateChanged:
    state: State
    previous: State
    detail: str


@dataclass(frozen=True, slots=True)
class AttachmentChanged:
    attachment: Attachment | None


@dataclass(frozen=True, slots=True)
class AddressChanged:
    old: IPv6Address | None
    new: IPv6Address | None
    reason: str
    gateway: tuple[IPv4Address, int] | None
    gateway_name: str | None = None
    """The configured host name ``gateway`` came from (``None`` for an address configured as is)."""


@dataclass(frozen=True, slots=True)
class GatewayChanged:
    """The gateway in use is another one (a failover, the names resolved anew, a new network): the next
    binding is made with it, under a new suffix."""

    gateway: Candidate | None
    previous: Candidate | None
    reason: str


@dataclass(frozen=True, slots=True)
class GatewayUnreachable:
    """A gateway answered on none of its ports: the next one is tried (the names are looked up again, in
    case they moved)."""

    gateway: Candidate
    next: Candidate | None
    all_dead: bool
    """Every gateway failed this round: the next attempt waits for the backoff."""


class KeepaliveKind(StrEnum):
    SENT = "sent"
    REPLY = "reply"
    MISSED = "missed"


@dataclass(frozen=True, slots=True)
class KeepaliveEvent:
    what: KeepaliveKind
    rtt: float | None
    missed: int


@dataclass(frozen=True, slots=True)
class CountersEvent:
    counters: dict[str, int]


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    code: ErrorCode
    message: str
    """The user-facing sentence for ``code``."""
    detail: str = ""
    """What exactly happened (the OS message, the port tried), for diagnostics."""

    @classmethod
    def of(cls, code: ErrorCode, detail: str = "") -> ErrorEvent:
        return cls(code, code.sentence, detail)


@dataclass(frozen=True, slots=True)
class MtuChanged:
    configured: int
    effective: int
    previous: int
    evidence: str
    """Why: ``"configured"``, ``"attachment"`` (reset on a new network), ``"icmp"`` or ``"emsgsize"``."""
    path_mtu: int | None = None
    """The IPv4 path MTU the evidence reported, when it gave one."""


@dataclass(frozen=True, slots=True)
class MtuProbeResult:
    """The outcome of an on-demand MTU probe: the largest IPv6 packet the probe address echoed."""

    ok: bool
    largest: int | None
    configured: int
    effective: int
    tried: tuple[tuple[int, bool], ...]
    """Each size tried, in order, and whether it was answered."""
    reason: str
    """Empty when ``ok``; otherwise why there is no answer (no probe address, not connected, ...)."""
    duration: float
    """``effective`` is the tunnel MTU as the search ends; with path MTU discovery on (``tunnel.pmtud``) the
    result is applied to it right after, with it off the search only measures."""
    found: str = ""
    """How the result was found (:class:`~m6t.client.pmtud.Found`), when there is one."""
    probes: int = 0
    """Probes sent, retries included."""


@dataclass(frozen=True, slots=True)
class MtuProbeDone:
    probe_id: int
    result: MtuProbeResult


@dataclass(frozen=True, slots=True)
class TunnelsChanged:
    """A tunnel came or went, or another one became the primary (``tunnel.uplinks = "all"``)."""

    interfaces: tuple[str, ...]
    primary: str | None


@dataclass(frozen=True, slots=True)
class OtherTunnel:
    """An event of a tunnel other than the primary one: the primary's events are the top level's."""

    interface: str
    uplink: str | None
    event: TunnelEvent


TunnelEvent = (
    StateChanged
    | AttachmentChanged
    | AddressChanged
    | GatewayChanged
    | GatewayUnreachable
    | KeepaliveEvent
    | CountersEvent
    | ErrorEvent
    | MtuChanged
    | MtuProbeDone
)
Event = TunnelEvent | TunnelsChanged | OtherTunnel
