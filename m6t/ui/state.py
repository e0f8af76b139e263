"""What the tray shows, derived from the helper's status: pure functions, no Qt, easy to test exhaustively."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from m6t.client.api.host import OsFamily, conventions_of
from m6t.client.api.schema import TunnelState


class TrayState(StrEnum):
    """The six states the issue names, plus the helper being out of reach (which is none of them)."""

    DISCONNECTED = "disconnected"
    WAITING = "waiting"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DEGRADED = "degraded"
    ERROR = "error"
    UNAVAILABLE = "unavailable"


TRAY_LABELS: Final[dict[TrayState, str]] = {
    TrayState.DISCONNECTED: "Disconnected",
    TrayState.WAITING: "Waiting for network",
    TrayState.CONNECTING: "Connecting",
    TrayState.CONNECTED: "Connected",
    TrayState.DEGRADED: "Connected, gateway not answering",
    TrayState.ERROR: "Error",
    TrayState.UNAVAILABLE: "Helper not reachable",
}

_TUNNEL_LABELS: Final[dict[str, str]] = {
    TunnelState.DISCONNECTED: "Disconnected",
    TunnelState.WAITING_FOR_NETWORK: "Waiting for an IPv4 network",
    TunnelState.SIGN_IN_REQUIRED: "This network needs you to sign in",
    TunnelState.CONNECTING: "Connecting to the gateway",
    TunnelState.CONNECTED: "Connected",
    TunnelState.DEGRADED: "Connected, gateway not answering",
    TunnelState.ERROR: "Error",
}

_TRAY_BY_TUNNEL: Final[dict[str, TrayState]] = {
    TunnelState.DISCONNECTED: TrayState.DISCONNECTED,
    TunnelState.WAITING_FOR_NETWORK: TrayState.WAITING,
    # Waiting too, on the user this time: the header and tooltip say so (header_label), not the icon.
    TunnelState.SIGN_IN_REQUIRED: TrayState.WAITING,
    TunnelState.CONNECTING: TrayState.CONNECTING,
    TunnelState.CONNECTED: TrayState.CONNECTED,
    TunnelState.DEGRADED: TrayState.DEGRADED,
    TunnelState.ERROR: TrayState.ERROR,
}

# Why a new address was drawn, as a notification finishes the sentence "New tunnel address: ...".  Both the
# schema's documented words and the session's RegenerationReason values appear on the wire, so both are here.
REGENERATION_REASONS: Final[dict[str, str]] = {
    "attach": "connected to a network",
    "attached": "connected to a network",
    "network-change": "the network changed",
    "attachment-changed": "the network changed",
    "lost-binding": "the gateway lost the binding",
    "keepalive-unanswered": "the gateway lost the binding",
    "probe-unanswered": "the Home Agent stopped answering",
    "no-reply": "nothing came back through the tunnel",
    "port-failover": "moved to the next gateway port",
    "gateway-changed": "moved to another gateway",
    "config-change": "the configuration changed",
    "config-changed": "the configuration changed",
    "reconnect": "reconnected",
    "retry-after-error": "retrying after an error",
}


def tunnel_label(state: str) -> str:
    """Unknown states (the schema lets the helper add some) are shown verbatim rather than hidden."""
    return _TUNNEL_LABELS.get(state, state)


def header_label(tray: TrayState, state: str) -> str:
    """The menu's header: the icon's words, or the tunnel's own where the user has something to do."""
    if tray is not TrayState.UNAVAILABLE and state == TunnelState.SIGN_IN_REQUIRED:
        return tunnel_label(state)
    return TRAY_LABELS[tray]


def reason_label(reason: str | None) -> str:
    if not reason:
        return "unknown reason"
    return REGENERATION_REASONS.get(reason.replace("_", "-"), reason)


def tray_state(*, reachable: bool, state: str, wanted: str) -> TrayState:
    if not reachable:
        return TrayState.UNAVAILABLE
    mapped = _TRAY_BY_TUNNEL.get(state)
    if mapped is None:
        # A state this GUI does not know yet: the wish is the best guide to whether something is going on.
        mapped = TrayState.CONNECTING if wanted == "up" else TrayState.DISCONNECTED
    return mapped


def wants_disconnect_action(*, state: str, wanted: str) -> bool:
    """True when the toggle should offer "Disconnect".

    The state alone would offer "Connect" while the helper is already busy connecting (it is "wanted up"
    then); the wish alone would offer "Disconnect" for a tunnel the helper already took down.
    """
    return wanted == "up" and state != TunnelState.DISCONNECTED


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def format_bits_per_second(value: float) -> str:
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} bit/s"


def format_clock(unix_time: float | None) -> str:
    if unix_time is None:
        return "\u2013"
    return time.strftime("%H:%M:%S", time.localtime(unix_time))


@dataclass(frozen=True, slots=True)
class TooltipFacts:
    tray: TrayState
    state: str
    address: str | None
    gateway: str | None
    connected_for_s: float | None
    hint: str | None = None


def tooltip(facts: TooltipFacts) -> str:
    """The tray tooltip: state, tunnel address, gateway, time connected (issue 6), or the way out of trouble."""
    if facts.tray is TrayState.UNAVAILABLE:
        lines = ["m6t: helper not reachable"]
    else:
        lines = [f"m6t: {tunnel_label(facts.state)}"]
    if facts.tray is not TrayState.UNAVAILABLE:
        if facts.address:
            lines.append(f"Address: {facts.address}")
        if facts.gateway:
            lines.append(f"Gateway: {facts.gateway}")
        if facts.connected_for_s is not None and facts.tray in (TrayState.CONNECTED, TrayState.DEGRADED):
            lines.append(f"Connected for {format_duration(facts.connected_for_s)}")
    if facts.hint:
        lines.append(facts.hint)
    return "\n".join(lines)


def helper_start_hint(family: OsFamily | None) -> str:
    """How to get a helper running on ``family``: the installers register it under the names the platform's
    conventions give."""
    return conventions_of(family).start_helper_sentence
