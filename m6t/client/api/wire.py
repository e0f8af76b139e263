"""The client core's typed records on the wire: the one place the control API's shapes are filled in.

Each function takes what the core (session, driver) or the platform reports and returns the schema's
record for it (:mod:`m6t.client.api.schema` names them).  Pure: no I/O and no clock; the driver's snapshot
carries the offset that turns its monotonic times into Unix times.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any, Final

from m6t.client import events as ev
from m6t.client.api import schema
from m6t.client.api.schema import Access, EventKind, Wanted
from m6t.client.driver import DriverStatus
from m6t.client.gateways import Candidate
from m6t.client.status import Status
from m6t.client.tunnels import TunnelStatus
from m6t.client.vocabulary import ErrorCode
from m6t.platform.base import PlatformError, PlatformErrorCode
from m6t.protocol.values import Attachment

EventData = (
    schema.StateEvent
    | schema.AttachmentEvent
    | schema.AddressEvent
    | schema.KeepaliveEvent
    | schema.CountersEvent
    | schema.MtuEvent
    | schema.ErrorInfo
    | schema.ConfigEvent
    | schema.WantedEvent
    | schema.AccessKeyNeededEvent
    | schema.TunnelsEvent
)
WireEvent = tuple[EventKind, EventData]


def _text(value: IPv4Address | IPv6Address | None) -> str | None:
    return None if value is None else str(value)


def _wall(t: float | None, offset: float) -> float | None:
    return None if t is None else t + offset


def _rtt_ms(rtt: float) -> float:
    return round(rtt * 1000, 3)


# ------------------------------------------------------------------------------------------ events


def attachment_to_wire(attachment: Attachment | None) -> schema.AttachmentInfo | None:
    if attachment is None:
        return None
    return {
        "local_ipv4": str(attachment.local_ipv4),
        "interface": attachment.interface,
        "router": _text(attachment.router),
    }


def event_to_wire(event: ev.Event) -> WireEvent | None:
    """The API event for a core event, ``None`` for those the API does not stream."""
    if isinstance(event, ev.StateChanged):
        return EventKind.STATE, {"state": event.state.value, "previous": event.previous.value, "detail": event.detail}
    if isinstance(event, ev.AttachmentChanged):
        return EventKind.ATTACHMENT, {"attachment": attachment_to_wire(event.attachment)}
    if isinstance(event, ev.AddressChanged):
        gateway = None if event.gateway is None else f"{event.gateway[0]}:{event.gateway[1]}"
        return EventKind.ADDRESS, {
            "address": _text(event.new),
            "previous": _text(event.old),
            "reason": event.reason,
            "gateway": gateway,
            "gateway_name": event.gateway_name,
        }
    if isinstance(event, ev.KeepaliveEvent):
        if event.what is ev.KeepaliveKind.REPLY and event.rtt is not None:
            return EventKind.KEEPALIVE, {"rtt_ms": _rtt_ms(event.rtt)}
        return None
    if isinstance(event, ev.CountersEvent):
        return EventKind.COUNTERS, {"counters": dict(event.counters)}
    if isinstance(event, ev.ErrorEvent):
        return EventKind.ERROR, error_to_wire(event)
    if isinstance(event, ev.MtuChanged):
        return EventKind.MTU, {
            "mtu": event.effective,
            "previous": event.previous,
            "configured": event.configured,
            "reason": event.evidence,
            "path_mtu": event.path_mtu,
        }
    return None


def error_to_wire(event: ev.ErrorEvent) -> schema.ErrorInfo:
    return schema.error_info(event.code, event.message or None, detail=event.detail or None)


def config_event(changed: list[str]) -> WireEvent:
    return EventKind.CONFIG, {"changed": changed}


def wanted_event(wanted: Wanted) -> WireEvent:
    return EventKind.WANTED, {"wanted": wanted}


def access_key_needed_event(key_id: str) -> WireEvent:
    return EventKind.ACCESS_KEY_NEEDED, {"key_id": key_id}


# ------------------------------------------------------------------------------------------ status


def tunnel_summary(tunnel: TunnelStatus) -> schema.TunnelSummary:
    status = tunnel.status.session
    rtt = status.keepalive.rtt
    return {
        "interface": tunnel.status.interface or "",
        "uplink": tunnel.status.uplink,
        "primary": tunnel.primary,
        "state": status.state.value,
        "detail": status.detail,
        "address": _text(status.address),
        "gateway": _gateway(status),
        "attachment": attachment_to_wire(status.attachment),
        "mtu": status.mtu_effective,
        "rtt_ms": None if rtt is None else _rtt_ms(rtt),
    }


def tunnels_event(tunnels: list[schema.TunnelSummary]) -> WireEvent:
    return EventKind.TUNNELS, {"tunnels": tunnels}


def _gateway(status: Status) -> str | None:
    if status.gateway_address is not None:
        return f"{status.gateway_address}:{status.gateway_port}"
    # None resolved yet: the configured entry, when there is one only.
    host = status.gateway_host
    return f"{host}:{status.gateway_port}" if host and ", " not in host else None


def _gateway_name(status: Status) -> str | None:
    """The configured name behind the gateway in use (``None`` for a literal, or with none in use)."""
    if status.gateway_address is None or status.gateway_host == str(status.gateway_address):
        return None
    return status.gateway_host


def _candidates(candidates: tuple[Candidate, ...]) -> list[dict[str, str]]:
    return [{"address": str(c.address), "host": c.host} for c in candidates]


def _mtu_search(status: Status, offset: float) -> schema.MtuSearchInfo | None:
    search = status.mtu_search
    if search is None:
        return None
    return {
        "state": search.state,
        "mtu": search.mtu,
        "found": search.found,
        "time": _wall(search.time, offset),
        "probes": search.probes,
        "duration_s": None if search.duration is None else round(search.duration, 3),
        "fragmentation": search.fragmentation,
        "next_search": _wall(search.next_search, offset),
        "probes_total": search.probes_total,
    }


def _mtu_detail(status: Status, offset: float) -> schema.MtuDetail:
    evidence = status.mtu_evidence
    detail: schema.MtuDetail = {
        "configured": status.mtu_configured,
        "effective": status.mtu_effective,
        "last_evidence": None
        if evidence is None
        else {"source": evidence.source, "path_mtu": evidence.path_mtu, "time": _wall(evidence.time, offset)},
    }
    search = _mtu_search(status, offset)
    if search is not None:  # absent with path MTU discovery off: the shape older trays know
        detail["search"] = search
    return detail


def _regenerations(status: Status, offset: float) -> list[schema.Regeneration]:
    return [
        {"time": r.time + offset, "reason": r.reason, "old": _text(r.old), "new": _text(r.new)}
        for r in status.regenerations
    ]


def session_to_wire(snapshot: DriverStatus) -> dict[str, Any]:
    """The session's full snapshot (``Status.session``): for diagnostics, its shape follows the session."""
    status, offset = snapshot.session, snapshot.wall_offset
    ka = status.keepalive
    age = None if ka.last_reply is None or status.now is None else max(0.0, status.now - ka.last_reply)
    return {
        "state": status.state.value,
        "detail": status.detail,
        "since": _wall(status.since, offset),
        "address": _text(status.address),
        "confirmed": status.confirmed,
        "gateway": _gateway(status),
        "gateway_detail": {
            "host": status.gateway_host,
            "address": _text(status.gateway_address),
            "port": status.gateway_port,
            "ports": list(status.ports),
            "candidates": _candidates(status.gateways),
            "dead": _candidates(status.gateways_dead),
        },
        "mtu": status.mtu_effective,
        "mtu_detail": _mtu_detail(status, offset),
        "keepalive": {
            "interval_s": ka.interval,
            "rtt_ms": None if ka.rtt is None else _rtt_ms(ka.rtt),
            "age_s": age,
            "last_sent": _wall(ka.last_sent, offset),
            "last_reply": _wall(ka.last_reply, offset),
            "missed": ka.missed,
            "counting": ka.counting,
        },
        "attachment": attachment_to_wire(status.attachment),
        "probe": _text(status.probe),
        "counters": dict(status.counters),
        "regenerations": _regenerations(status, offset),
        "failures": status.failures,
        "retry_at": _wall(status.retry_at, offset),
        "interface": snapshot.interface,
        "wanted": "up" if snapshot.wanted_up else "down",
        "backend": snapshot.backend,
        # The driver's own copy of the start-up findings; the classified ones are the status's ``problems``.
        "problems": [
            {"code": int(ErrorCode.PLATFORM_ERROR), "message": str(p), "hint": p.hint} for p in snapshot.problems
        ],
    }


def status_to_wire(
    snapshot: DriverStatus | None,
    *,
    wanted: Wanted,
    configured_interface: str | None,
    problems: list[schema.ErrorInfo],
    access: Access,
    helper: schema.HelperInfo,
    tunnels: list[schema.TunnelSummary] | None = None,
) -> schema.Status:
    """The ``status`` reply from the driver's snapshot (``None``: no driver) and what the helper adds:
    ``tunnels``, every tunnel's summary (:func:`tunnel_summary`)."""
    if snapshot is None:
        return {
            "tunnels": [],
            "state": schema.TunnelState.DISCONNECTED.value,
            "detail": "",
            "address": None,
            "gateway": None,
            "mtu": None,
            "keepalive": {
                "rtt_ms": None,
                "age_s": None,
                "interval_s": None,
                "last_sent": None,
                "last_reply": None,
                "missed": 0,
            },
            "mtu_detail": None,
            "attachment": None,
            "counters": {},
            "regenerations": [],
            "since": None,
            "wanted": wanted,
            "interface": configured_interface,
            "problems": problems,
            "access": access.value,
            "helper": helper,
            "session": {},
        }
    status, offset = snapshot.session, snapshot.wall_offset
    ka = status.keepalive
    age = None if ka.last_reply is None or status.now is None else round(max(0.0, status.now - ka.last_reply), 1)
    return {
        "state": status.state.value,
        "detail": status.detail,
        "address": _text(status.address),
        "gateway": _gateway(status),
        "gateway_name": _gateway_name(status),
        "mtu": status.mtu_effective,
        "keepalive": {
            "rtt_ms": None if ka.rtt is None else _rtt_ms(ka.rtt),
            "age_s": age,
            "interval_s": float(ka.interval),
            "last_sent": _wall(ka.last_sent, offset),
            "last_reply": _wall(ka.last_reply, offset),
            "missed": ka.missed,
        },
        "mtu_detail": _mtu_detail(status, offset),
        "attachment": attachment_to_wire(status.attachment),
        "counters": dict(status.counters),
        "regenerations": _regenerations(status, offset),
        "since": _wall(status.since, offset),
        "wanted": wanted,
        "interface": snapshot.interface or configured_interface,
        "problems": problems,
        "access": access.value,
        "helper": helper,
        "tunnels": tunnels if tunnels is not None else [],
        "session": session_to_wire(snapshot),
    }


# -------------------------------------------------------------------------------------- MTU probe


def mtu_probe_to_wire(result: ev.MtuProbeResult) -> schema.MtuProbeResult:
    """The ``mtu.probe`` reply for a probe that found an answer (``result.largest``)."""
    if result.largest is None:
        raise ValueError("a probe without an answer is an error, not a result")
    reply: schema.MtuProbeResult = {
        "mtu": result.largest,
        "previous": result.effective,
        "configured": result.configured,
        "tried": [{"size": size, "answered": answered} for size, answered in result.tried],
        "duration": round(result.duration, 3),
    }
    if result.found:
        reply["found"] = result.found
        reply["probes"] = result.probes
    return reply


# ------------------------------------------------------------------------------- platform problems

_PLATFORM_CODES: Final[dict[PlatformErrorCode, ErrorCode]] = {
    PlatformErrorCode.TUN_MISSING: ErrorCode.TUN_MISSING,
    PlatformErrorCode.IPV6_DISABLED: ErrorCode.IPV6_DISABLED,
    PlatformErrorCode.PERMISSION_DENIED: ErrorCode.PERMISSION_DENIED,
    PlatformErrorCode.INTERFACE_BUSY: ErrorCode.INTERFACE_BUSY,
    PlatformErrorCode.OTHER: ErrorCode.PLATFORM_ERROR,
}


def error_code_for(code: PlatformErrorCode) -> ErrorCode:
    """The client's numbered code for what the platform says went wrong (the one such mapping)."""
    return _PLATFORM_CODES[code]


def problem_to_wire(error: PlatformError) -> schema.ErrorInfo:
    """A start-up check finding as a ``problems`` entry: the backend says what, this says which number."""
    code = error_code_for(error.code)
    sentence = str(error)
    sentence = sentence[0].upper() + sentence[1:] if sentence else code.sentence
    if not sentence.endswith("."):
        sentence += "."
    return schema.error_info(code, sentence, hint=error.hint)
