"""The tray against the fake helper: icon and tooltip per state, every menu action, notifications, read-only
mode, and the helper disappearing and coming back."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from m6t.client.api.schema import Access, ErrorCode, EventKind, Method, TunnelState
from m6t.ui import dialogs
from m6t.ui.preferences import NotifyLevel
from m6t.ui.state import TrayState, header_label, tunnel_label
from m6t.ui.tray import TrayController
from tests.ui.conftest import START_HINT, TRAY_STATE_OF, WAIT_MS, wait_online
from tests.ui.fake_helper import ADDRESS, ADDRESS2, GATEWAY, FakeHelper, make_status


def wait_icon(qtbot: QtBot, tray: TrayController, expected: TrayState) -> None:
    qtbot.waitUntil(lambda: tray.current_icon_state() is expected, timeout=WAIT_MS)


def notifications(tray: TrayController) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    tray.notified.connect(lambda title, text: seen.append((title, text)))
    return seen


# ------------------------------------------------------------------------------------------- icon, tooltip


@pytest.mark.parametrize("state", list(TunnelState))
def test_each_state_has_its_icon_and_tooltip(
    qtbot: QtBot, tray: TrayController, helper: FakeHelper, state: str
) -> None:
    # Through "connecting" first, so the tray sees when the connection began.
    helper.set_state(TunnelState.CONNECTING)
    wait_icon(qtbot, tray, TrayState.CONNECTING)
    helper.set_state(state)
    wait_icon(qtbot, tray, TRAY_STATE_OF[state])
    lines = tray.icon.toolTip().splitlines()
    assert lines[0] == f"m6t: {tunnel_label(state)}"
    assert f"Address: {ADDRESS}" in lines
    assert f"Gateway: {GATEWAY}" in lines
    assert tray.header_action.text() == f"m6t: {header_label(TRAY_STATE_OF[state], state)}"
    assert tray.icon.icon().cacheKey() != 0
    if state in (TunnelState.CONNECTED, TunnelState.DEGRADED):
        assert any(line.startswith("Connected for ") for line in lines)


def test_time_connected_from_a_status_that_has_it(
    qtbot: QtBot, make_helper: Callable[..., FakeHelper], make_tray: Callable[[], TrayController]
) -> None:
    helper = make_helper()
    helper.status = make_status(TunnelState.CONNECTED, since=time.time() - 125)
    tray = make_tray()
    wait_online(qtbot, tray.model, helper)
    # To the minute: the tooltip follows the helper's events, no timer ticks it (an idle tray sleeps).
    assert "Connected for 2 min" in tray.icon.toolTip().splitlines()


def test_icon_follows_every_state_event(qtbot: QtBot, tray: TrayController, helper: FakeHelper) -> None:
    shown: list[TrayState | None] = []
    tray.model.changed.connect(lambda: shown.append(tray.current_icon_state()))
    sequence = [
        TunnelState.DEGRADED,
        TunnelState.WAITING_FOR_NETWORK,
        TunnelState.CONNECTING,
        TunnelState.CONNECTED,
        TunnelState.ERROR,
        TunnelState.CONNECTING,
        TunnelState.CONNECTED,
    ]
    # A burst with no pause between events: each one must still reach the icon.
    for state in sequence:
        helper.set_state(state)
    qtbot.waitUntil(lambda: len(shown) >= len(sequence), timeout=WAIT_MS)
    assert shown[: len(sequence)] == [TRAY_STATE_OF[state] for state in sequence]


def test_unknown_state_is_shown_verbatim(qtbot: QtBot, tray: TrayController, helper: FakeHelper) -> None:
    helper.set_state("hibernating")
    qtbot.waitUntil(lambda: tray.icon.toolTip().startswith("m6t: hibernating"), timeout=WAIT_MS)
    assert tray.current_icon_state() is TrayState.CONNECTING


# ------------------------------------------------------------------------------------------- menu actions


def test_toggle_disconnects_and_connects(qtbot: QtBot, tray: TrayController, helper: FakeHelper) -> None:
    assert tray.toggle_action.text() == "&Disconnect"
    tray.toggle_action.trigger()
    wait_icon(qtbot, tray, TrayState.DISCONNECTED)
    assert helper.methods()[-1] is Method.DOWN
    assert tray.toggle_action.text() == "&Connect"
    tray.toggle_action.trigger()
    wait_icon(qtbot, tray, TrayState.CONNECTING)
    assert helper.methods()[-1] is Method.UP
    assert tray.toggle_action.text() == "&Disconnect"


def test_toggle_follows_changes_made_elsewhere(qtbot: QtBot, tray: TrayController, helper: FakeHelper) -> None:
    # Another client (the CLI) takes the tunnel down: the menu must offer "Connect" without a click here.
    helper.status["wanted"] = "down"
    helper.push_event(EventKind.WANTED, {"wanted": "down"})
    helper.set_state(TunnelState.DISCONNECTED)
    qtbot.waitUntil(lambda: tray.toggle_action.text() == "&Connect", timeout=WAIT_MS)


def test_status_and_settings_open(qtbot: QtBot, tray: TrayController) -> None:
    tray.status_action.trigger()
    assert tray.status_window.isVisible()
    tray.settings_action.trigger()
    assert tray.settings_dialog is not None and tray.settings_dialog.isVisible()
    assert tray.settings_dialog.gateway_edit.text() == "198.51.100.2"


def test_copy_tunnel_address(qtbot: QtBot, tray: TrayController, helper: FakeHelper) -> None:
    assert tray.copy_action.isEnabled()
    tray.copy_action.trigger()
    assert QGuiApplication.clipboard().text() == ADDRESS
    helper.set_address(None, "detached")
    qtbot.waitUntil(lambda: not tray.copy_action.isEnabled(), timeout=WAIT_MS)


def test_open_log(qtbot: QtBot, tray: TrayController) -> None:
    tray.log_action.trigger()
    window = tray.status_window
    assert window.isVisible() and window.tabs.currentIndex() == 4
    qtbot.waitUntil(lambda: "helper started" in window.log_view.toPlainText(), timeout=WAIT_MS)
    assert "WARNING" in window.log_view.toPlainText()


def test_export_diagnostics(
    qtbot: QtBot, tray: TrayController, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "bundle.json"
    monkeypatch.setattr(dialogs, "ask_save_path", lambda *args: target)
    tray.export_action.trigger()
    qtbot.waitUntil(target.exists, timeout=WAIT_MS)
    bundle = json.loads(target.read_text())
    assert bundle["status"]["state"] == "connected"
    assert str(target) in tray.status_window.message.text()


def test_export_diagnostics_cancelled_asks_nothing(
    qtbot: QtBot, tray: TrayController, helper: FakeHelper, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dialogs, "ask_save_path", lambda *args: None)
    tray.export_action.trigger()
    qtbot.wait(50)
    assert Method.DIAGNOSTICS not in helper.methods()


def test_notifications_menu_turns_them_down(qtbot: QtBot, tray: TrayController) -> None:
    for level in (NotifyLevel.OFF, NotifyLevel.ERRORS):
        tray.notify_actions[level].trigger()
        assert tray.preferences.notify_level is level
    assert tray.notify_actions[NotifyLevel.ERRORS].isChecked()


def test_quit(qtbot: QtBot, tray: TrayController, monkeypatch: pytest.MonkeyPatch) -> None:
    quits: list[bool] = []
    monkeypatch.setattr(QApplication, "quit", lambda: quits.append(True))
    tray.quit_action.trigger()
    assert quits == [True]
    assert not tray.model.connection.is_online()


# ------------------------------------------------------------------------------------------- notifications


def test_notifies_on_connect(qtbot: QtBot, tray: TrayController, helper: FakeHelper) -> None:
    seen = notifications(tray)
    helper.set_state(TunnelState.CONNECTING)
    helper.set_state(TunnelState.CONNECTED)
    qtbot.waitUntil(lambda: bool(seen), timeout=WAIT_MS)
    assert seen == [("m6t connected", f"Tunnel address {ADDRESS} via {GATEWAY}.")]


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("attachment_changed", "the network changed"),
        ("keepalive_unanswered", "the gateway lost the binding"),
        ("port-failover", "moved to the next gateway port"),
    ],
)
def test_notifies_new_address_with_reason(
    qtbot: QtBot, tray: TrayController, helper: FakeHelper, reason: str, words: str
) -> None:
    seen = notifications(tray)
    helper.set_state(TunnelState.CONNECTING)
    helper.set_address(ADDRESS2, reason)
    helper.set_state(TunnelState.CONNECTED)
    qtbot.waitUntil(lambda: tray.model.state == TunnelState.CONNECTED and bool(seen), timeout=WAIT_MS)
    qtbot.wait(50)
    # The reconnection right after is not announced a second time.
    assert seen == [("m6t: new tunnel address", f"{ADDRESS2}: {words}.")]
    assert tray.model.address == ADDRESS2


def test_notifies_errors_once_per_minute(qtbot: QtBot, tray: TrayController, helper: FakeHelper) -> None:
    seen = notifications(tray)
    helper.error(ErrorCode.GATEWAY_UNREACHABLE, hint="Check the gateway's firewall.")
    helper.error(ErrorCode.GATEWAY_UNREACHABLE)
    helper.error(ErrorCode.NO_NETWORK)
    qtbot.waitUntil(lambda: len(seen) >= 2, timeout=WAIT_MS)
    qtbot.wait(50)
    assert seen == [
        ("m6t error", "The gateway does not answer. Check the gateway's firewall."),
        ("m6t error", ErrorCode.NO_NETWORK.sentence),
    ]


def test_errors_only_level(qtbot: QtBot, tray: TrayController, helper: FakeHelper) -> None:
    tray.preferences.notify_level = NotifyLevel.ERRORS
    seen = notifications(tray)
    helper.set_address(ADDRESS2, "attachment_changed")
    helper.error(ErrorCode.NO_NETWORK)
    qtbot.waitUntil(lambda: bool(seen), timeout=WAIT_MS)
    qtbot.wait(50)
    assert [title for title, _ in seen] == ["m6t error"]


def test_notifications_off(qtbot: QtBot, tray: TrayController, helper: FakeHelper) -> None:
    tray.preferences.notify_level = NotifyLevel.OFF
    seen = notifications(tray)
    helper.set_address(ADDRESS2, "attachment_changed")
    helper.error(ErrorCode.NO_NETWORK)
    qtbot.waitUntil(lambda: tray.model.address == ADDRESS2 and tray.model.last_error is not None, timeout=WAIT_MS)
    qtbot.wait(50)
    assert seen == []


# ------------------------------------------------------------------------------------------- read-only


def test_read_only_user_sees_everything_but_cannot_change(
    qtbot: QtBot, make_helper: Callable[..., FakeHelper], make_tray: Callable[[], TrayController]
) -> None:
    helper = make_helper(Access.READ_ONLY)
    helper.status = make_status(TunnelState.CONNECTED)
    tray = make_tray()
    wait_online(qtbot, tray.model, helper)
    assert tray.current_icon_state() is TrayState.CONNECTED
    assert f"Address: {ADDRESS}" in tray.icon.toolTip()
    assert not tray.toggle_action.isEnabled()
    reason = ErrorCode.FORBIDDEN.sentence
    assert reason in tray.toggle_action.toolTip()
    assert tray.reason_action.isVisible() and reason in tray.reason_action.text()
    assert tray.copy_action.isEnabled() and tray.export_action.isEnabled()
    tray.show_status()
    window = tray.status_window
    assert not window.toggle_button.isEnabled() and not window.probe_button.isEnabled()
    assert reason in window.banner.text()
    assert window.field("address") == ADDRESS

    # Even if a click got through, the helper refuses and the user is told.
    seen = notifications(tray)
    tray.toggle()
    qtbot.waitUntil(lambda: bool(seen), timeout=WAIT_MS)
    assert seen[0] == ("m6t: could not disconnect", reason)


# ------------------------------------------------------------------------------------------- helper lost


def test_helper_disappears_and_comes_back(qtbot: QtBot, tray: TrayController, helper: FakeHelper) -> None:
    seen = notifications(tray)
    tray.show_status()
    assert not tray.status_window.banner.isVisible()
    helper.stop()
    wait_icon(qtbot, tray, TrayState.UNAVAILABLE)
    tooltip = tray.icon.toolTip()
    assert tooltip.splitlines()[0] == "m6t: helper not reachable"
    assert START_HINT in tooltip
    assert not tray.toggle_action.isEnabled() and not tray.copy_action.isEnabled()
    assert tray.reason_action.isVisible() and START_HINT in tray.reason_action.text()
    assert seen and seen[0][0] == "m6t helper not reachable"
    window = tray.status_window
    assert START_HINT in window.banner.text() and window.banner.isVisible()
    assert "Retrying" in window.banner.text()
    assert window.state_label.text() == "Helper not reachable"

    helper.status = make_status(TunnelState.WAITING_FOR_NETWORK)
    helper.start()
    wait_icon(qtbot, tray, TrayState.WAITING)
    assert tray.toggle_action.isEnabled()
    assert not tray.reason_action.isVisible()
    # Events flow again on the new connection.
    qtbot.waitUntil(lambda: helper.subscribers == 1, timeout=WAIT_MS)
    helper.set_state(TunnelState.CONNECTED)
    wait_icon(qtbot, tray, TrayState.CONNECTED)
    assert not window.banner.isVisible()
    assert window.state_label.text() == "Connected"


def test_starts_without_helper(
    qtbot: QtBot, make_helper: Callable[..., FakeHelper], make_tray: Callable[[], TrayController]
) -> None:
    tray = make_tray()
    wait_icon(qtbot, tray, TrayState.UNAVAILABLE)
    assert "The m6t helper is not running." in tray.reason_action.text()
    make_helper()
    wait_icon(qtbot, tray, TrayState.DISCONNECTED)
    assert tray.toggle_action.text() == "&Connect"


def test_an_idle_tray_arms_no_timer(qtbot: QtBot, tray: TrayController) -> None:
    """Connected, windows closed: nothing is due, so nothing may wake the tray (a laptop's battery)."""
    from PySide6.QtCore import QTimer

    qtbot.wait(100)
    assert [timer for timer in tray.findChildren(QTimer) if timer.isActive()] == []
    assert [timer for timer in tray.model.connection.findChildren(QTimer) if timer.isActive()] == []
    tray.show_status()
    assert tray.status_window._ticker.isActive()
    tray.status_window.close()
    assert not tray.status_window._ticker.isActive()


def test_refresh_hands_on_only_what_changed(
    qtbot: QtBot, tray: TrayController, monkeypatch: pytest.MonkeyPatch
) -> None:
    pushed: list[str] = []
    monkeypatch.setattr(tray.icon, "setToolTip", pushed.append)
    monkeypatch.setattr(tray.icon, "setIcon", lambda icon: pushed.append("icon"))
    tray.refresh()
    tray.refresh()
    assert pushed == []
