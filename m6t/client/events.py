"""What the client session tells the world: typed, JSON-able status events.

The control API streams these to the tray; the helper logs them.  Every event has a ``kind`` (the
event's name on the wire) and ``to_dict()``; error events carry a stable numbered code and one
sentence a user can act on, so the UI never has to parse log text.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address
from typing import Any, ClassVar

from m6t.client.vocabulary import ErrorCode, State
from m6t.protocol.values import Attachment


def attachment_dict(attachment: Attachment | None) -> dict[str, Any] | None:
    if attachment is None:
        return None
    return {
        "local_ipv4": str(attachment.local_ipv4),
        "interface": attachment.interface,
        "router": None if attachment.router is None else str(attachment.router),
    }


def _address(value: IPv6Address | IPv4Address | None) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class StateChanged:
    kind: ClassVar[str] = "state"
    state: State
    previous: State
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, "state": self.state.value, "previous": self.previous.value, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class AttachmentChanged:
    kind: ClassVar[str] = "attachment"
    attachment: Attachment | None

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, "attachment": attachment_dict(self.attachment)}


@dataclass(frozen=True, slots=True)
class AddressChanged:
    kind: ClassVar[str] = "address"
    old: IPv6Address | None
    new: IPv6Address | None
    reason: str
    gateway: tuple[IPv4Address, int] | None

    def to_dict(self) -> dict[str, Any]:
        gateway = None if self.gateway is None else f"{self.gateway[0]}:{self.gateway[1]}"
        return {
            "event": self.kind,
            "address": _address(self.new),
            "previous": _address(self.old),
            "reason": self.reason,
            "gateway": gateway,
        }


class KeepaliveKind(StrEnum):
    SENT = "sent"
    REPLY = "reply"
    MISSED = "missed"


@dataclass(frozen=True, slots=True)
class KeepaliveEvent:
    kind: ClassVar[str] = "keepalive"
    what: KeepaliveKind
    rtt: float | None
    missed: int

    def to_dict(self) -> dict[str, Any]:
        rtt_ms = None if self.rtt is None else round(self.rtt * 1000, 3)
        return {"event": self.kind, "what": self.what.value, "rtt_ms": rtt_ms, "missed": self.missed}


@dataclass(frozen=True, slots=True)
class CountersEvent:
    kind: ClassVar[str] = "counters"
    counters: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, "counters": self.counters}


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    kind: ClassVar[str] = "error"
    code: ErrorCode
    message: str
    """The user-facing sentence for ``code``."""
    detail: str = ""
    """What exactly happened (the OS message, the port tried), for diagnostics."""

    @classmethod
    def of(cls, code: ErrorCode, detail: str = "") -> ErrorEvent:
        return cls(code, code.sentence, detail)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.kind,
            "code": int(self.code),
            "name": self.code.name.lower(),
            "message": self.message,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class MtuChanged:
    kind: ClassVar[str] = "mtu"
    configured: int
    effective: int
    previous: int
    evidence: str
    """Why: ``"configured"``, ``"attachment"`` (reset on a new network), ``"icmp"`` or ``"emsgsize"``."""
    path_mtu: int | None = None
    """The IPv4 path MTU the evidence reported, when it gave one."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.kind,
            "mtu": self.effective,
            "previous": self.previous,
            "configured": self.configured,
            "reason": self.evidence,
            "path_mtu": self.path_mtu,
        }


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
    """``effective`` is the tunnel MTU when the probe ran; the probe itself never changes it."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "mtu": self.largest,
            "previous": self.effective,
            "configured": self.configured,
            "tried": [{"size": size, "answered": answered} for size, answered in self.tried],
            "reason": self.reason,
            "duration": round(self.duration, 3),
        }


@dataclass(frozen=True, slots=True)
class MtuProbeDone:
    kind: ClassVar[str] = "mtu_probe"
    probe_id: int
    result: MtuProbeResult

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, "probe_id": self.probe_id, **self.result.to_dict()}


Event = (
    StateChanged
    | AttachmentChanged
    | AddressChanged
    | KeepaliveEvent
    | CountersEvent
    | ErrorEvent
    | MtuChanged
    | MtuProbeDone
)
