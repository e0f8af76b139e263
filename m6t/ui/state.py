"""What the tray shows, derived from the helper's status: pure functions, easy to test exhaustively.

The words are English in the source, marked for the catalogue (:func:`QT_TRANSLATE_NOOP`) and translated
where they are shown (:func:`translate`, which needs no QApplication).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from m6t.client.api.host import OsFamily, conventions_of
from m6t.client.api.schema import TunnelState, TunnelSummary
from m6t.ui.i18n import QT_TRANSLATE_NOOP, translate

CONTEXT: Final = "state"


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
    TrayState.DISCONNECTED: QT_TRANSLATE_NOOP("state", "Disconnected"),
    TrayState.WAITING: QT_TRANSLATE_NOOP("state", "Waiting for network"),
    TrayState.CONNECTING: QT_TRANSLATE_NOOP("state", "Connecting"),
    TrayState.CONNECTED: QT_TRANSLATE_NOOP("state", "Connected"),
    TrayState.DEGRADED: QT_TRANSLATE_NOOP("state", "Connected, gateway not answering"),
    TrayState.ERROR: QT_TRANSLATE_NOOP("state", "Error"),
    TrayState.UNAVAILABLE: QT_TRANSLATE_NOOP("state", "Helper not reachable"),
}

_TUNNEL_LABELS: Final[dict[str, str]] = {
    TunnelState.DISCONNECTED: QT_TRANSLATE_NOOP("state", "Disconnected"),
    TunnelState.WAITING_FOR_NETWORK: QT_TRANSLATE_NOOP("state", "Waiting for an IPv4 network"),
    TunnelState.SIGN_IN_REQUIRED: QT_TRANSLATE_NOOP("state", "This network needs you to sign in"),
    TunnelState.CONNECTING: QT_TRANSLATE_NOOP("state", "Connecting to the gateway"),
    TunnelState.CONNECTED: QT_TRANSLATE_NOOP("state", "Connected"),
    TunnelState.DEGRADED: QT_TRANSLATE_NOOP("state", "Connected, gateway not answering"),
    TunnelState.ERROR: QT_TRANSLATE_NOOP("state", "Error"),
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
    "attach": QT_TRANSLATE_NOOP("state", "connected to a network"),
    "attached": QT_TRANSLATE_NOOP("state", "connected to a network"),
    "network-change": QT_TRANSLATE_NOOP("state", "the network changed"),
    "attachment-changed": QT_TRANSLATE_NOOP("state", "the network changed"),
    "lost-binding": QT_TRANSLATE_NOOP("state", "the gateway lost the binding"),
    "keepalive-unanswered": QT_TRANSLATE_NOOP("state", "the gateway lost the binding"),
    "probe-unanswered": QT_TRANSLATE_NOOP("state", "the Home Agent stopped answering"),
    "no-reply": QT_TRANSLATE_NOOP("state", "nothing came back through the tunnel"),
    "port-failover": QT_TRANSLATE_NOOP("state", "moved to the next gateway port"),
    "gateway-changed": QT_TRANSLATE_NOOP("state", "moved to another gateway"),
    "config-change": QT_TRANSLATE_NOOP("state", "the configuration changed"),
    "config-changed": QT_TRANSLATE_NOOP("state", "the configuration changed"),
    "reconnect": QT_TRANSLATE_NOOP("state", "reconnected"),
    "retry-after-error": QT_TRANSLATE_NOOP("state", "retrying after an error"),
}


def _t(text: str) -> str:
    return translate(CONTEXT, text)


def tunnel_label(state: str) -> str:
    """Unknown states (the schema lets the helper add some) are shown verbatim rather than hidden."""
    label = _TUNNEL_LABELS.get(state)
    return state if label is None else _t(label)


def tray_label(tray: TrayState) -> str:
    return _t(TRAY_LABELS[tray])


def header_label(tray: TrayState, state: str) -> str:
    """The menu's header: the icon's words, or the tunnel's own where the user has something to do."""
    if tray is not TrayState.UNAVAILABLE and state == TunnelState.SIGN_IN_REQUIRED:
        return tunnel_label(state)
    return tray_label(tray)


def reason_label(reason: str | None) -> str:
    if not reason:
        return translate("state", "unknown reason")
    label = REGENERATION_REASONS.get(reason.replace("_", "-"))
    return reason if label is None else _t(label)


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
        return translate("state", "{days} d {hours} h").format(days=days, hours=hours)
    if hours:
        return translate("state", "{hours} h {minutes:02d} min").format(hours=hours, minutes=minutes)
    if minutes:
        return translate("state", "{minutes} min {seconds:02d} s").format(minutes=minutes, seconds=secs)
    return translate("state", "{seconds} s").format(seconds=secs)


def format_minutes(seconds: float) -> str:
    """A duration to the minute, for text that is refreshed only when something happens (the tooltip): a
    seconds count there would be stale at once, and ticking it would wake a sleeping laptop."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return translate("state", "less than a minute")
    days, rest = divmod(seconds, 86400)
    hours, minutes = divmod(rest // 60, 60)
    if days:
        return translate("state", "{days} d {hours} h").format(days=days, hours=hours)
    if hours:
        return translate("state", "{hours} h {minutes:02d} min").format(hours=hours, minutes=minutes)
    return translate("state", "{minutes} min").format(minutes=minutes)


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
class TunnelLine:
    """One tunnel as the tray's menu and tooltip name it (``tunnel.uplinks = "all"``: one per IPv4 uplink)."""

    interface: str
    uplink: str | None
    state: str
    address: str | None

    @staticmethod
    def of(tunnel: TunnelSummary) -> TunnelLine:
        return TunnelLine(tunnel["interface"], uplink_of(tunnel), tunnel["state"], tunnel.get("address"))


def uplink_of(tunnel: TunnelSummary) -> str | None:
    """The IPv4 interface a tunnel leaves by: the one it is bound to (``"all"``), else the one the OS routes
    through (``"best"``), which its attachment names."""
    attachment = tunnel.get("attachment")
    return tunnel.get("uplink") or (attachment["interface"] if attachment else None)


def tunnel_line(tunnel: TunnelLine) -> str:
    """``m6t1 via wlan0: Connected, fd6d::1``: no round trip or counter here, which would change the menu (and
    wake the tray host that draws it) at every keepalive."""
    name = (
        translate("state", "{interface} via {uplink}").format(interface=tunnel.interface, uplink=tunnel.uplink)
        if tunnel.uplink
        else tunnel.interface
    )
    state = tunnel_label(tunnel.state)
    if tunnel.address:
        return translate("state", "{tunnel}: {state}, {address}").format(
            tunnel=name, state=state, address=tunnel.address
        )
    return translate("state", "{tunnel}: {state}").format(tunnel=name, state=state)


def overall_state(primary: str, states: list[str]) -> str:
    """The state the icon and headlines show: with several tunnels, connected when any one is (the host has
    a working path then), otherwise the primary's, as with one tunnel."""
    if len(states) > 1 and TunnelState.CONNECTED in states:
        return TunnelState.CONNECTED.value
    return primary


def tunnels_connected(connected: int, total: int) -> str:
    return translate("state", "Tunnels connected: {connected} of {total}").format(connected=connected, total=total)


@dataclass(frozen=True, slots=True)
class TooltipFacts:
    tray: TrayState
    state: str
    address: str | None
    gateway: str | None
    connected_for_s: float | None
    hint: str | None = None
    tunnels: tuple[TunnelLine, ...] = ()
    """Every tunnel when there are several (then each line carries its address); empty with one."""


def tooltip(facts: TooltipFacts) -> str:
    """The tray tooltip: state, tunnel address, gateway, time connected (issue 6), or the way out of trouble;
    with several tunnels, how many are connected and one line each."""
    if facts.tray is TrayState.UNAVAILABLE:
        lines = [translate("state", "m6t: helper not reachable")]
    else:
        lines = [translate("state", "m6t: {state}").format(state=tunnel_label(facts.state))]
    if facts.tray is not TrayState.UNAVAILABLE:
        if facts.tunnels:
            connected = sum(tunnel.state == TunnelState.CONNECTED for tunnel in facts.tunnels)
            lines.append(tunnels_connected(connected, len(facts.tunnels)))
            lines.extend(tunnel_line(tunnel) for tunnel in facts.tunnels)
        elif facts.address:
            lines.append(translate("state", "Address: {address}").format(address=facts.address))
        if facts.gateway:
            lines.append(translate("state", "Gateway: {gateway}").format(gateway=facts.gateway))
        if facts.connected_for_s is not None and facts.tray in (TrayState.CONNECTED, TrayState.DEGRADED):
            duration = format_minutes(facts.connected_for_s)
            lines.append(translate("state", "Connected for {duration}").format(duration=duration))
    if facts.hint:
        lines.append(facts.hint)
    return "\n".join(lines)


# The platform's sentences (m6t.platform.hints, which knows no Qt), marked here for the catalogue and
# translated where shown; tests/ui/test_translations.py keeps the two lists equal.
START_HINTS: Final = (
    QT_TRANSLATE_NOOP("state", "Start it with: sudo systemctl start m6t-helper"),
    QT_TRANSLATE_NOOP("state", "Start it with: sudo launchctl kickstart system/org.m6t.helper"),
    QT_TRANSLATE_NOOP("state", "Start the “m6t helper” service (services.msc), or run: sc start m6t-helper"),
    QT_TRANSLATE_NOOP("state", "Start it as root with: m6t-helper"),
)


def helper_start_hint(family: OsFamily | None) -> str:
    """How to get a helper running on ``family``: the installers register it under the names the platform's
    conventions give."""
    return _t(conventions_of(family).start_helper_sentence)
