"""The tray's picture of the helper: the last status, kept current by the event stream, plus short histories.

Every view (tray, status window, settings) reads this one object and redraws on :attr:`TunnelModel.changed`,
so no view can miss an event the others saw: the "icon stops updating" bug of other tray apps comes from
views that each listen to a different subset of events.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from PySide6.QtCore import QObject, Signal

from m6t.client.api import schema
from m6t.client.api.schema import Access, ErrorCode, EventKind, Method, Permission, TunnelState
from m6t.ui.connection import HelperConnection, Outcome
from m6t.ui.errors import error_sentence
from m6t.ui.state import TooltipFacts, TrayState, TunnelLine, overall_state, tray_state

HISTORY_S: Final = 300.0
"""How far back the live charts reach."""

# Counter names the throughput chart differentiates (the session's Counters.to_dict names).
RX_BYTES: Final = "rx_bytes"
TX_BYTES: Final = "tx_bytes"

CONNECT: Final = "connect"
"""The permission ``up``, ``down`` and the MTU probe need (``Status.permissions``)."""
CONFIGURE: Final = "configure"
"""The permission a configuration change needs."""
CONNECTED_STATES: Final = frozenset({TunnelState.CONNECTED, TunnelState.DEGRADED})


@dataclass(frozen=True, slots=True)
class RttSample:
    time: float
    rtt_ms: float


@dataclass(frozen=True, slots=True)
class RateSample:
    time: float
    rx_bps: float
    tx_bps: float


@dataclass(frozen=True, slots=True)
class MtuChange:
    time: float
    mtu: int
    configured: int | None
    reason: str | None
    path_mtu: int | None


def flat_counters(counters: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, int]]:
    """``{"drops_in": {"too_short": 2}}`` → ``("drops_in.too_short", 2)``: one table shows every counter."""
    for name, value in counters.items():
        if isinstance(value, Mapping):
            yield from flat_counters(value, f"{prefix}{name}.")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            yield f"{prefix}{name}", int(value)


def is_drop_counter(name: str) -> bool:
    return "drop" in name


def tunnel_summaries(value: object) -> list[schema.TunnelSummary] | None:
    """The helper's ``tunnels`` (``None``: an older helper sent none), each read as a :class:`TunnelSummary`
    whatever it holds: an entry with no interface or state is left out, a value of the wrong type is shown as
    unknown, rather than either stopping the tray."""
    if not isinstance(value, list):
        return None
    return [summary for entry in value if (summary := _summary(entry)) is not None]


def _summary(entry: object) -> schema.TunnelSummary | None:
    if not isinstance(entry, Mapping):
        return None
    interface, state = entry.get("interface"), entry.get("state")
    if not isinstance(interface, str) or not isinstance(state, str):
        return None
    attachment = entry.get("attachment")
    valid_attachment = (
        isinstance(attachment, Mapping)
        and isinstance(attachment.get("local_ipv4"), str)
        and isinstance(attachment.get("interface"), str)
    )
    rtt, mtu = entry.get("rtt_ms"), entry.get("mtu")
    summary: schema.TunnelSummary = {
        "interface": interface,
        "uplink": _text(entry.get("uplink")),
        "primary": entry.get("primary") is True,
        "state": state,
        "detail": _text(entry.get("detail")) or "",
        "address": _text(entry.get("address")),
        "gateway": _text(entry.get("gateway")),
        "attachment": cast(schema.AttachmentInfo, attachment) if valid_attachment else None,
        "mtu": mtu if isinstance(mtu, int) and not isinstance(mtu, bool) else None,
        "rtt_ms": float(rtt) if isinstance(rtt, int | float) and not isinstance(rtt, bool) else None,
    }
    return summary


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def with_top_level(summary: schema.TunnelSummary, status: schema.Status) -> schema.TunnelSummary:
    """The primary tunnel as the status's top level says it: the events that keep that current (state,
    address, keepalive, mtu...) arrive more often than the ``tunnels`` event, and an older helper has only
    them."""
    keepalive = status.get("keepalive") or {}
    return {
        **summary,
        "interface": status.get("interface") or summary["interface"],
        "state": status["state"],
        "detail": status.get("detail", summary.get("detail", "")),
        "address": status.get("address"),
        "gateway": status.get("gateway"),
        "attachment": status.get("attachment"),
        "mtu": status.get("mtu"),
        "rtt_ms": keepalive.get("rtt_ms"),
    }


def current_tunnels(status: schema.Status) -> list[schema.TunnelSummary]:
    """Every tunnel, in interface order, the primary's summary taken from the top level; one tunnel made of
    the top level for a helper that sends no ``tunnels``."""
    summaries = tunnel_summaries(status.get("tunnels"))
    if summaries is None:
        alone: schema.TunnelSummary = {
            "interface": "",
            "uplink": None,
            "primary": True,
            "state": status["state"],
            "detail": "",
            "address": None,
            "gateway": None,
            "attachment": None,
            "mtu": None,
            "rtt_ms": None,
        }
        return [with_top_level(alone, status)]
    return [with_top_level(summary, status) if summary.get("primary") else summary for summary in summaries]


class TunnelModel(QObject):
    changed = Signal()
    """Anything below changed; views re-read what they show."""
    connected_to_gateway = Signal()
    address_regenerated = Signal(dict)
    """A :class:`schema.Regeneration`: a new address replaced one in use."""
    error_raised = Signal(dict)
    """An :class:`schema.ErrorInfo` from an ``error`` event."""
    reachability_changed = Signal(bool)
    config_loaded = Signal()
    access_key_needed = Signal(str)
    """The helper has no key for ``access.key_id`` (this name): the key agent answers from the user's keyring."""
    tunnels_changed = Signal()
    """:attr:`TunnelModel.tunnels` changed (a tunnel came or went, or one's summary changed); emitted before
    :attr:`changed`."""

    def __init__(self, connection: HelperConnection, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.connection = connection
        self.reachable = False
        self.offline_reason: str | None = None
        self.access: str = Access.READ_ONLY.value
        self.permissions: dict[str, str] | None = None
        """The helper's ``permissions`` (``None``: an older helper, ``access`` says it all)."""
        self.server: str | None = None
        self.status: schema.Status | None = None
        self.config: dict[str, Any] | None = None
        self.config_path: str | None = None
        self.connected_since: float | None = None
        self.keepalive_reply_at: float | None = None
        self.last_error: schema.ErrorInfo | None = None
        self.last_mtu: MtuChange | None = None
        self.rtt: deque[RttSample] = deque()
        self.rates: deque[RateSample] = deque()
        self.tunnels: list[schema.TunnelSummary] = []
        """Every tunnel (``tunnel.uplinks = "all"``: one per IPv4 uplink), in interface order; empty until a
        status came."""
        self._last_counters: tuple[float, int, int] | None = None
        self._now: Callable[[], float] = time.time
        connection.online.connect(self._on_online)
        connection.offline.connect(self._on_offline)
        connection.event_received.connect(self._on_event)

    # ----------------------------------------------------------------------------------------- reading

    @property
    def read_only(self) -> bool:
        return self.access != Access.OPERATOR.value

    def permission(self, action: str) -> str:
        """``yes``, ``auth`` (an administrator's password first) or ``no`` for ``connect`` / ``configure``."""
        if self.permissions is None:
            return Permission.NO.value if self.read_only else Permission.YES.value
        answer = self.permissions.get(action, Permission.NO.value)
        return answer if answer in (Permission.YES.value, Permission.AUTH.value) else Permission.NO.value

    def refusal(self, action: str) -> str | None:
        """Why this user may not ``action`` (``connect`` / ``configure``) from here, ``None`` when they may try."""
        answer = self.permission(action)
        if answer == Permission.YES.value or (answer == Permission.AUTH.value and action == CONFIGURE):
            return None
        reason = self.tr("Read-only: {why}").format(why=error_sentence(ErrorCode.FORBIDDEN))
        if self.permissions is None:
            return reason
        polkit_action = f"org.m6t.{action}"
        if answer == Permission.AUTH.value:
            more = self.tr(
                "Connecting needs an administrator's password outside the active desktop session; "
                "an administrator can allow {action} for you."
            )
        else:
            more = self.tr("An administrator can allow {action} for you (polkit) or add you to the operator group.")
        return f"{reason} {more.format(action=polkit_action)}"

    @property
    def state(self) -> str:
        return self.status["state"] if self.status else TunnelState.DISCONNECTED.value

    @property
    def wanted(self) -> str:
        return self.status["wanted"] if self.status else "down"

    @property
    def address(self) -> str | None:
        return self.status.get("address") if self.status else None

    @property
    def overall_state(self) -> str:
        """What the icon and the headlines show: with several tunnels, connected when any one is."""
        return overall_state(self.state, [tunnel["state"] for tunnel in self.tunnels])

    @property
    def tray_state(self) -> TrayState:
        reachable = self.reachable and self.status is not None
        return tray_state(reachable=reachable, state=self.overall_state, wanted=self.wanted)

    def tunnel_lines(self) -> tuple[TunnelLine, ...]:
        """One line per tunnel when there are several; none with one (the tray then shows it as it always did)."""
        if len(self.tunnels) < 2:
            return ()
        return tuple(TunnelLine.of(tunnel) for tunnel in self.tunnels)

    def tooltip_facts(self, hint: str | None = None) -> TooltipFacts:
        since = self.connected_since
        return TooltipFacts(
            tray=self.tray_state,
            state=self.overall_state,
            address=self.address,
            gateway=schema.gateway_label(self.status) if self.status else None,
            connected_for_s=None if since is None else self._now() - since,
            hint=hint,
            tunnels=self.tunnel_lines(),
        )

    def counters(self) -> list[tuple[str, int]]:
        counters = self.status.get("counters") if self.status else None
        return list(flat_counters(counters)) if isinstance(counters, Mapping) else []

    def regenerations(self) -> list[schema.Regeneration]:
        history = self.status.get("regenerations") if self.status else None
        # An older helper sent only a count here; a count has no history to show.
        return [entry for entry in history if isinstance(entry, dict)] if isinstance(history, list) else []

    def config_value(self, key: str) -> Any:
        """``section.key`` of the loaded configuration, ``None`` when absent."""
        section, _, name = key.partition(".")
        return (self.config or {}).get(section, {}).get(name)

    # ---------------------------------------------------------------------------------------- requests

    def call(
        self, method: Method, params: dict[str, Any] | None = None, handler: Callable[[Outcome], None] | None = None
    ) -> None:
        self.connection.call(method, params, handler)

    def set_wanted(self, up: bool, handler: Callable[[Outcome], None] | None = None) -> None:
        def done(outcome: Outcome) -> None:
            if outcome.ok and isinstance(outcome.result, dict):
                self._take_status(cast(schema.Status, outcome.result))
            if handler is not None:
                handler(outcome)

        self.call(Method.UP if up else Method.DOWN, None, done)

    def refresh_status(self) -> None:
        def done(outcome: Outcome) -> None:
            if outcome.ok and isinstance(outcome.result, dict):
                self._take_status(cast(schema.Status, outcome.result))

        self.call(Method.STATUS, None, done)

    def refresh_config(self) -> None:
        def done(outcome: Outcome) -> None:
            if outcome.ok and isinstance(outcome.result, dict):
                result = cast(schema.ConfigGetResult, outcome.result)
                self.config = result.get("config")
                self.config_path = result.get("path")
                self.config_loaded.emit()
                self.changed.emit()

        self.call(Method.CONFIG_GET, None, done)

    # ----------------------------------------------------------------------------------------- updates

    def _on_online(self, hello: dict[str, Any]) -> None:
        self.access = str(hello.get("access", Access.READ_ONLY.value))
        self.permissions = _permissions(hello.get("permissions"))
        self.server = str(hello.get("server", ""))
        self.offline_reason = None

        def subscribed(outcome: Outcome) -> None:
            if not outcome.ok or not isinstance(outcome.result, dict):
                return
            status = outcome.result.get("status")
            if isinstance(status, dict):
                was_reachable, self.reachable = self.reachable, True
                self._take_status(cast(schema.Status, status))
                if not was_reachable:
                    self.reachability_changed.emit(True)

        self.call(Method.SUBSCRIBE, None, subscribed)
        self.refresh_config()

    def _on_offline(self, reason: str) -> None:
        was_reachable = self.reachable
        self.reachable = False
        self.offline_reason = reason
        self.connected_since = None
        self._last_counters = None
        if was_reachable:
            self.reachability_changed.emit(False)
        self.changed.emit()

    def _take_status(self, status: schema.Status) -> None:
        previous = self.status["state"] if self.status else None
        self.status = status
        self.access = status.get("access", self.access)
        if "permissions" in status:
            self.permissions = _permissions(status.get("permissions"))
        now = self._now()
        age = status.get("keepalive", {}).get("age_s")
        self.keepalive_reply_at = None if age is None else now - age
        self._track_connection(previous, status["state"], now, from_status=True)
        # Not in the schema's Status yet; the session's status has it (when the current state began).
        since = cast(Mapping[str, Any], status).get("since")
        if previous is None and status["state"] in CONNECTED_STATES and isinstance(since, int | float):
            self.connected_since = float(since)
        self._update_tunnels()
        self.changed.emit()

    def _update_tunnels(self) -> None:
        assert self.status is not None
        tunnels = current_tunnels(self.status)
        if tunnels != self.tunnels:
            self.tunnels = tunnels
            self.tunnels_changed.emit()

    def _track_connection(self, previous: str | None, state: str, when: float, *, from_status: bool = False) -> None:
        if state not in CONNECTED_STATES:
            self.connected_since = None
        elif previous not in CONNECTED_STATES:
            # The status carries no "since": a tunnel found up at start-up has an unknown start, which is
            # better left blank than shown as "connected for 0 s".
            self.connected_since = None if from_status and previous is None else when
            if not from_status:
                self.connected_to_gateway.emit()

    def _on_event(self, message: dict[str, Any]) -> None:
        if self.status is None:
            return
        event = cast(schema.Event, message)
        kind, data = event.get("event"), event.get("data", {})
        when = float(event.get("time") or self._now())
        status = self.status
        if kind == EventKind.STATE:
            state_data = cast(schema.StateEvent, data)
            previous = status["state"]
            status["state"] = state_data["state"]
            if "detail" in state_data:
                status["detail"] = state_data["detail"]
            self._track_connection(previous, state_data["state"], when)
        elif kind == EventKind.ATTACHMENT:
            status["attachment"] = cast(schema.AttachmentEvent, data).get("attachment")
        elif kind == EventKind.ADDRESS:
            self._on_address(cast(schema.AddressEvent, data), when)
        elif kind == EventKind.KEEPALIVE:
            rtt = float(cast(schema.KeepaliveEvent, data)["rtt_ms"])
            keepalive = status.setdefault("keepalive", {"rtt_ms": None, "age_s": None, "interval_s": None})
            keepalive["rtt_ms"] = rtt
            keepalive["age_s"] = 0.0
            self.keepalive_reply_at = when
            self.rtt.append(RttSample(when, rtt))
        elif kind == EventKind.COUNTERS:
            counters = cast(schema.CountersEvent, data).get("counters", {})
            status["counters"] = counters
            self._sample_rates(counters, when)
        elif kind == EventKind.MTU:
            mtu = cast(schema.MtuEvent, data)
            status["mtu"] = mtu["mtu"]
            self.last_mtu = MtuChange(when, mtu["mtu"], mtu.get("configured"), mtu.get("reason"), mtu.get("path_mtu"))
        elif kind == EventKind.ERROR:
            error = cast(schema.ErrorInfo, data)
            self.last_error = error
            self.error_raised.emit(dict(error))
        elif kind == EventKind.CONFIG:
            self.refresh_config()
        elif kind == EventKind.WANTED:
            status["wanted"] = cast(schema.WantedEvent, data)["wanted"]
        elif kind == EventKind.ACCESS_KEY_NEEDED:
            self.access_key_needed.emit(str(cast(schema.AccessKeyNeededEvent, data).get("key_id", "")))
        elif kind == EventKind.TUNNELS:
            tunnels = tunnel_summaries(cast(schema.TunnelsEvent, data).get("tunnels"))
            if tunnels is not None:
                status["tunnels"] = tunnels
        elif kind == EventKind.DROPPED:
            # Missed events may have been state changes: start again from a full status.
            self.refresh_status()
        self._prune(when)
        self._update_tunnels()
        self.changed.emit()

    def _on_address(self, data: schema.AddressEvent, when: float) -> None:
        assert self.status is not None
        new, old = data.get("address"), data.get("previous")
        self.status["address"] = new
        if data.get("gateway"):
            self.status["gateway"] = data.get("gateway")
            self.status["gateway_name"] = data.get("gateway_name")
        if new and old and new != old:
            regeneration: schema.Regeneration = {"time": when, "reason": data.get("reason", ""), "old": old, "new": new}
            self.status["regenerations"] = [*self.regenerations(), regeneration]
            self.address_regenerated.emit(dict(regeneration))
        # The address event does not carry everything the status window shows with it (the full history,
        # the counters' reset): one status round trip brings them.
        self.refresh_status()

    def _sample_rates(self, counters: Mapping[str, Any], when: float) -> None:
        flat = dict(flat_counters(counters))
        rx, tx = flat.get(RX_BYTES), flat.get(TX_BYTES)
        if rx is None or tx is None:
            return
        if self._last_counters is not None:
            then, rx0, tx0 = self._last_counters
            elapsed = when - then
            # Counters restart with a new session; a negative delta is a reset, not negative traffic.
            if elapsed > 0 and rx >= rx0 and tx >= tx0:
                self.rates.append(RateSample(when, (rx - rx0) * 8 / elapsed, (tx - tx0) * 8 / elapsed))
        self._last_counters = (when, rx, tx)

    def _prune(self, now: float) -> None:
        horizon = now - HISTORY_S
        while self.rtt and self.rtt[0].time < horizon:
            self.rtt.popleft()
        while self.rates and self.rates[0].time < horizon:
            self.rates.popleft()


def _permissions(value: object) -> dict[str, str] | None:
    if not isinstance(value, Mapping):
        return None
    return {str(key): str(answer) for key, answer in value.items()}
