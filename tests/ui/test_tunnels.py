"""Every tunnel in the tray, its menu, its tooltip and the status window (``tunnel.uplinks = "all"``: one tunnel
per IPv4 uplink), from recorded statuses and ``tunnels`` events; an older helper's one tunnel from the status's
top level."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from PySide6.QtCore import QTimer
from pytestqt.qtbot import QtBot

from m6t.client.api import schema
from m6t.client.api.schema import EventKind, TunnelState
from m6t.ui.model import TunnelModel, tunnel_summaries
from m6t.ui.state import TrayState
from m6t.ui.tray import TrayController
from tests.ui.conftest import WAIT_MS, wait_online
from tests.ui.fake_helper import ADDRESS, GATEWAY, FakeHelper, make_status, make_tunnel
from tests.ui.test_status_window import rows

DASH = "\u2013"
# The fake helper's top level: the primary tunnel m6t0 leaves by lan1 (192.0.2.10), RTT 3.2 ms.
PRIMARY = make_tunnel("m6t0", "lan1", primary=True)
SECOND = make_tunnel("m6t1", "wwan0")
SECOND_ADDRESS = SECOND["address"]
PRIMARY_ROW = ["m6t0 (primary)", "lan1 (192.0.2.10)", "Connected", ADDRESS, "3.2 ms", "1472", GATEWAY]
SECOND_ROW = ["m6t1", "wwan0 (203.0.113.11)", "Connected", SECOND_ADDRESS, "8.5 ms", "1472", GATEWAY]


def start(
    qtbot: QtBot,
    make_helper: Callable[..., FakeHelper],
    make_tray: Callable[[], TrayController],
    status: schema.Status,
) -> tuple[TrayController, FakeHelper]:
    helper = make_helper()
    helper.status = status
    tray = make_tray()
    wait_online(qtbot, tray.model, helper)
    tray.show_status()
    return tray, helper


def tunnel_texts(tray: TrayController) -> list[str]:
    """The menu's tunnel lines, read from the menu itself, in its order."""
    actions = tray.menu.actions()
    return [action.text() for action in actions if action in tray.tunnel_actions and action.isVisible()]


def test_two_tunnels_then_one_gone(
    qtbot: QtBot, make_helper: Callable[..., FakeHelper], make_tray: Callable[[], TrayController]
) -> None:
    tray, helper = start(qtbot, make_helper, make_tray, make_status(TunnelState.CONNECTED, tunnels=[PRIMARY, SECOND]))
    window = tray.status_window
    assert rows(window.tunnels_table) == [PRIMARY_ROW, SECOND_ROW]
    assert not window.tunnels_note.isHidden() and "primary tunnel, m6t0" in window.tunnels_note.text()
    assert window.state_label.text() == "Connected"
    assert window.state_detail.text().endswith("Tunnels connected: 2 of 2")
    lines = [f"m6t0 via lan1: Connected, {ADDRESS}", f"m6t1 via wwan0: Connected, {SECOND_ADDRESS}"]
    assert tunnel_texts(tray) == lines
    # Under the header, before the actions.
    actions = tray.menu.actions()
    assert actions.index(tray.tunnel_actions[0]) > actions.index(tray.header_action)
    assert actions.index(tray.tunnel_actions[-1]) < actions.index(tray.toggle_action)
    assert tray.icon.toolTip().splitlines() == [
        "m6t: Connected",
        "Tunnels connected: 2 of 2",
        *lines,
        f"Gateway: {GATEWAY}",
    ]

    # The uplink of m6t1 went away, and its tunnel with it.
    with qtbot.waitSignal(tray.model.tunnels_changed, timeout=WAIT_MS):
        helper.set_tunnels([PRIMARY])
    qtbot.waitUntil(lambda: window.tunnels_table.rowCount() == 1, timeout=WAIT_MS)
    # One tunnel: shown as the tray always showed it, its row with nothing to tell it from others.
    assert rows(window.tunnels_table) == [["m6t0", *PRIMARY_ROW[1:]]]
    assert window.tunnels_note.isHidden()
    assert window.state_detail.text() == ADDRESS
    assert tray.tunnel_actions == [] and tunnel_texts(tray) == []
    assert tray.icon.toolTip().splitlines() == ["m6t: Connected", f"Address: {ADDRESS}", f"Gateway: {GATEWAY}"]

    # A new uplink brings a tunnel back.
    helper.set_tunnels([PRIMARY, make_tunnel("m6t1", "wlan0", TunnelState.CONNECTING)])
    qtbot.waitUntil(lambda: len(tunnel_texts(tray)) == 2, timeout=WAIT_MS)
    assert tunnel_texts(tray)[1] == "m6t1 via wlan0: Connecting to the gateway"
    assert rows(window.tunnels_table)[1][:4] == ["m6t1", "wlan0 (203.0.113.11)", "Connecting to the gateway", DASH]
    assert "Tunnels connected: 1 of 2" in tray.icon.toolTip().splitlines()


def test_the_icon_is_connected_while_any_tunnel_is(
    qtbot: QtBot, make_helper: Callable[..., FakeHelper], make_tray: Callable[[], TrayController]
) -> None:
    """The primary reconnects (its uplink changed) while the other tunnel still carries traffic."""
    reconnecting = make_tunnel("m6t0", "lan1", TunnelState.CONNECTING, primary=True)
    status = make_status(TunnelState.CONNECTING, tunnels=[reconnecting, SECOND])
    tray, helper = start(qtbot, make_helper, make_tray, status)
    assert tray.current_icon_state() is TrayState.CONNECTED
    assert tray.header_action.text() == "m6t: Connected"
    assert tray.icon.toolTip().splitlines()[:2] == ["m6t: Connected", "Tunnels connected: 1 of 2"]
    assert tray.status_window.state_label.text() == "Connected"
    assert tray.status_window.state_detail.text().endswith("Tunnels connected: 1 of 2")

    # The other one stops answering too: the primary's state again, as with one tunnel.
    helper.set_tunnels([reconnecting, make_tunnel("m6t1", "wwan0", TunnelState.DEGRADED)])
    qtbot.waitUntil(lambda: tray.current_icon_state() is TrayState.CONNECTING, timeout=WAIT_MS)
    assert tray.icon.toolTip().splitlines()[:2] == ["m6t: Connecting to the gateway", "Tunnels connected: 0 of 2"]
    assert tunnel_texts(tray)[1] == f"m6t1 via wwan0: Connected, gateway not answering, {SECOND_ADDRESS}"

    # And the primary's own state event brings it back.
    helper.set_state(TunnelState.CONNECTED)
    qtbot.waitUntil(lambda: tray.current_icon_state() is TrayState.CONNECTED, timeout=WAIT_MS)
    assert tunnel_texts(tray)[0].startswith("m6t0 via lan1: Connected")


def test_an_older_helper_shows_one_row_from_the_top_level(
    qtbot: QtBot, make_helper: Callable[..., FakeHelper], make_tray: Callable[[], TrayController]
) -> None:
    status = make_status(TunnelState.CONNECTED, gateway_name="gw.example.org")
    assert "tunnels" not in status
    tray, helper = start(qtbot, make_helper, make_tray, status)
    window = tray.status_window
    gateway = f"{GATEWAY} (gw.example.org)"
    assert rows(window.tunnels_table) == [
        ["m6t0", "lan1 (192.0.2.10)", "Connected", ADDRESS, "3.2 ms", "1472", gateway]
    ]
    assert window.tunnels_note.isHidden()
    assert tray.tunnel_actions == []
    assert tray.icon.toolTip().splitlines() == ["m6t: Connected", f"Address: {ADDRESS}", f"Gateway: {gateway}"]

    # The row follows the events that describe the one tunnel.
    with qtbot.waitSignal(tray.model.tunnels_changed, timeout=WAIT_MS):
        helper.push_event(EventKind.KEEPALIVE, {"rtt_ms": 7.0})
    qtbot.waitUntil(lambda: rows(window.tunnels_table)[0][4] == "7.0 ms", timeout=WAIT_MS)
    helper.push_event(EventKind.MTU, {"mtu": 1400, "previous": 1472, "reason": "probe"})
    helper.push_event(EventKind.STATE, {"state": TunnelState.DEGRADED, "detail": "keepalive unanswered"})
    qtbot.waitUntil(lambda: rows(window.tunnels_table)[0][2] == "Connected, gateway not answering", timeout=WAIT_MS)
    assert rows(window.tunnels_table)[0][5] == "1400"
    state_item = window.tunnels_table.item(0, 2)
    assert state_item is not None and state_item.toolTip() == "keepalive unanswered"


def test_the_primary_row_follows_the_top_level_events(
    qtbot: QtBot, make_helper: Callable[..., FakeHelper], make_tray: Callable[[], TrayController]
) -> None:
    """A keepalive answer on the primary is a ``keepalive`` event: its row need not wait for ``tunnels``."""
    tray, helper = start(qtbot, make_helper, make_tray, make_status(TunnelState.CONNECTED, tunnels=[PRIMARY, SECOND]))
    window = tray.status_window
    helper.push_event(EventKind.KEEPALIVE, {"rtt_ms": 4.75})
    qtbot.waitUntil(lambda: rows(window.tunnels_table)[0][4] in ("4.8 ms", "4.7 ms"), timeout=WAIT_MS)
    assert rows(window.tunnels_table)[1] == SECOND_ROW


def test_a_tunnels_event_that_is_not_a_list_changes_nothing(
    qtbot: QtBot, make_helper: Callable[..., FakeHelper], make_tray: Callable[[], TrayController]
) -> None:
    tray, helper = start(qtbot, make_helper, make_tray, make_status(TunnelState.CONNECTED, tunnels=[PRIMARY, SECOND]))
    helper.push_event(EventKind.TUNNELS, {"tunnels": "all of them"})
    helper.push_event(EventKind.TUNNELS, {})
    helper.push_event(EventKind.KEEPALIVE, {"rtt_ms": 9.0})
    qtbot.waitUntil(lambda: rows(tray.status_window.tunnels_table)[0][4] == "9.0 ms", timeout=WAIT_MS)
    assert len(tray.model.tunnels) == 2 and len(tray.tunnel_actions) == 2


def test_malformed_summaries_are_read_as_far_as_they_go() -> None:
    summaries = tunnel_summaries(
        [
            {"interface": 3, "state": "connected"},
            "m6t9",
            {"interface": "m6t2"},
            {"interface": "m6t1", "state": "connected", "rtt_ms": "fast", "mtu": True, "attachment": {"interface": 5}},
        ]
    )
    assert summaries == [
        {
            "interface": "m6t1",
            "uplink": None,
            "primary": False,
            "state": "connected",
            "detail": "",
            "address": None,
            "gateway": None,
            "attachment": None,
            "mtu": None,
            "rtt_ms": None,
        }
    ]
    assert tunnel_summaries(None) is None and tunnel_summaries({"m6t0": {}}) is None


# ------------------------------------------------------------------------------------------- idle


@pytest.fixture
def several(
    qtbot: QtBot, make_helper: Callable[..., FakeHelper], make_tray: Callable[[], TrayController]
) -> tuple[TrayController, FakeHelper]:
    helper = make_helper()
    helper.status = make_status(TunnelState.CONNECTED, tunnels=[PRIMARY, SECOND])
    tray = make_tray()
    wait_online(qtbot, tray.model, helper)
    return tray, helper


def test_an_idle_tray_with_several_tunnels_arms_no_timer(
    qtbot: QtBot, several: tuple[TrayController, FakeHelper]
) -> None:
    tray, _ = several
    qtbot.wait(100)
    assert len(tray.tunnel_actions) == 2
    assert [timer for timer in tray.findChildren(QTimer) if timer.isActive()] == []
    assert [timer for timer in tray.model.connection.findChildren(QTimer) if timer.isActive()] == []
    assert [timer for timer in tray.status_window.findChildren(QTimer) if timer.isActive()] == []


def test_the_menu_lines_are_handed_on_only_when_they_change(
    qtbot: QtBot, several: tuple[TrayController, FakeHelper], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each menu change travels to the tray host (the D-Bus menu) and wakes it: a counter or a round trip,
    which the lines do not show, changes nothing there."""
    tray, helper = several
    texts: list[str] = []
    pushed: list[str] = []
    for action in tray.tunnel_actions:
        monkeypatch.setattr(action, "setText", texts.append)
    monkeypatch.setattr(tray.menu, "insertAction", lambda *args: pushed.append("insert"))
    monkeypatch.setattr(tray.icon, "setToolTip", pushed.append)
    tray.refresh()
    helper.push_event(EventKind.KEEPALIVE, {"rtt_ms": 5.0})
    helper.push_event(EventKind.COUNTERS, {"counters": {"rx_bytes": 1, "tx_bytes": 1}})
    helper.set_tunnels([PRIMARY, make_tunnel("m6t1", "wwan0", rtt_ms=12.0)])
    qtbot.waitUntil(lambda: tray.model.tunnels[1]["rtt_ms"] == 12.0, timeout=WAIT_MS)
    assert texts == [] and pushed == []
    helper.set_tunnels([PRIMARY, make_tunnel("m6t1", "wwan0", TunnelState.DEGRADED)])
    qtbot.waitUntil(lambda: bool(texts), timeout=WAIT_MS)
    # Only the line that changed, in place.
    assert texts == [f"m6t1 via wwan0: Connected, gateway not answering, {SECOND_ADDRESS}"]
    assert len(pushed) == 1 and pushed[0].startswith("m6t: Connected\nTunnels connected: 1 of 2")


def test_the_table_is_redrawn_on_samples_only(
    qtbot: QtBot, several: tuple[TrayController, FakeHelper], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock's tick and a sample the table does not show leave it alone; a round trip it shows redraws it."""
    tray, helper = several
    window = tray.status_window
    tray.show_status()
    item = window.tunnels_table.item(1, 4)
    changes: list[int] = []
    tray.model.tunnels_changed.connect(lambda: changes.append(1))
    clock = [time.time() + 60]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    window._tick()
    helper.push_event(EventKind.COUNTERS, {"counters": {"rx_bytes": 1, "tx_bytes": 1}})
    qtbot.waitUntil(
        lambda: tray.model.status is not None and tray.model.status["counters"] == {"rx_bytes": 1, "tx_bytes": 1},
        timeout=WAIT_MS,
    )
    assert changes == []
    assert window.tunnels_table.item(1, 4) is item, "nothing it shows changed: the table is not refilled"
    helper.set_tunnels([PRIMARY, make_tunnel("m6t1", "wwan0", rtt_ms=12.0)])
    qtbot.waitUntil(lambda: window.tunnels_table.item(1, 4) is not item, timeout=WAIT_MS)
    assert rows(window.tunnels_table)[1][4] == "12.0 ms"
    assert changes == [1]


def test_the_model_alone(qtbot: QtBot, model: TunnelModel, helper: FakeHelper) -> None:
    """No view: the list and its signal are the model's (a view opened later reads them)."""
    helper.status = make_status(TunnelState.CONNECTED, tunnels=[PRIMARY, SECOND])
    with qtbot.waitSignal(model.tunnels_changed, timeout=WAIT_MS):
        model.connection.start()
    assert [tunnel["interface"] for tunnel in model.tunnels] == ["m6t0", "m6t1"]
    assert [tunnel["primary"] for tunnel in model.tunnels] == [True, False]
    assert model.overall_state == TunnelState.CONNECTED
