"""What the client session tells the world: typed, JSON-able status events.

The control API streams these to the tray; the helper logs them.  Every event has a ``kind`` (the
event's name on the wire) and ``to_dict()``; error events carry a stable numbered code and one
sentence a user can act on, so the UI never has to parse log text.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from ipaddress import IPv4Address, IPv6Address
from typing import Any, ClassVar

from m6t.platform.base import Attachment


class State(StrEnum):
    DISCONNECTED = "disconnected"
    """Not asked to connect (or asked to disconnect)."""
    WAITING_FOR_NETWORK = "waiting_for_network"
    """Asked to connect, but no IPv4 path to the gateway (or its name is not resolved yet)."""
    CONNECTING = "connecting"
    """Address installed, nothing has come back for it yet: the gateway state is not active."""
    CONNECTED = "connected"
    DEGRADED = "degraded"
    """Keepalives going unanswered, or backing off between failed attempts."""
    ERROR = "error"
    """The OS refused something (socket, address, route); retried with backoff."""


class RegenerationReason(StrEnum):
    """Why the 48-bit suffix was drawn anew; each one means a new state at the gateway."""

    ATTACHED = "attached"
    ATTACHMENT_CHANGED = "attachment_changed"
    KEEPALIVE_UNANSWERED = "keepalive_unanswered"
    PROBE_UNANSWERED = "probe_unanswered"
    NO_REPLY = "no_reply"
    GATEWAY_CHANGED = "gateway_changed"
    CONFIG_CHANGED = "config_changed"
    RECONNECT = "reconnect"
    RETRY_AFTER_ERROR = "retry_after_error"


class ErrorCode(IntEnum):
    """Stable numbers, the same as the control API's (``m6t.client.api.schema.ErrorCode``), which
    passes them through: 3xxx host / platform, 4xxx the tunnel at run time."""

    TUN_MISSING = 3001
    IPV6_DISABLED = 3002
    GATEWAY_UNRESOLVABLE = 3004
    PLATFORM_ERROR = 3005
    TUN_FAILED = 3007
    NO_NETWORK = 4002
    BINDING_LOST = 4003
    ADDRESS_FAILED = 4005
    PROBE_UNANSWERED = 4008
    NO_REPLY = 4009
    SOCKET_FAILED = 4010


ERROR_TEXT: dict[ErrorCode, str] = {
    ErrorCode.TUN_MISSING: "The TUN driver is not available on this computer.",
    ErrorCode.IPV6_DISABLED: "IPv6 is disabled on this computer.",
    ErrorCode.GATEWAY_UNRESOLVABLE: "The gateway's name cannot be resolved; retrying.",
    ErrorCode.PLATFORM_ERROR: "The operating system refused a network change.",
    ErrorCode.TUN_FAILED: "The tunnel interface could not be created.",
    ErrorCode.NO_NETWORK: "There is no IPv4 network toward the gateway.",
    ErrorCode.BINDING_LOST: "The gateway forgot this computer; reconnecting with a new address.",
    ErrorCode.ADDRESS_FAILED: "The tunnel address could not be installed.",
    ErrorCode.PROBE_UNANSWERED: "The Home Agent does not answer through the gateway on this port; trying again.",
    ErrorCode.NO_REPLY: "Nothing comes back through the tunnel for the traffic sent; trying again.",
    ErrorCode.SOCKET_FAILED: "The connection to the gateway could not be opened; m6t will retry.",
}


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
        return cls(code, ERROR_TEXT[code], detail)

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
