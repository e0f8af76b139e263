"""What polkit lets this user do, shown before they try: controls greyed with the reason in their tooltip, and a
Save that needs an administrator's password says so (the helper's permissions in hello and status)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QDialogButtonBox
from pytestqt.qtbot import QtBot

from m6t.client.api import schema
from m6t.client.api.schema import Access, ErrorCode, Method, Permission, TunnelState
from m6t.ui.settings_dialog import PASSWORD_NOTE
from m6t.ui.tray import TrayController
from tests.ui.conftest import WAIT_MS, wait_online
from tests.ui.fake_helper import FakeHelper, make_status


def _reader(
    qtbot: QtBot,
    make_helper: Callable[..., FakeHelper],
    make_tray: Callable[[], TrayController],
    connect: Permission,
    configure: Permission,
) -> tuple[FakeHelper, TrayController]:
    helper = make_helper(Access.READ_ONLY, start=False)
    helper.permissions = schema.permissions(connect, configure)
    helper.status = make_status(TunnelState.DISCONNECTED)
    helper.start()
    tray = make_tray()
    wait_online(qtbot, tray.model, helper)
    return helper, tray


def test_the_active_session_connects_and_is_told_saving_asks_for_the_password(
    qtbot: QtBot, make_helper: Callable[..., FakeHelper], make_tray: Callable[[], TrayController]
) -> None:
    helper, tray = _reader(qtbot, make_helper, make_tray, Permission.YES, Permission.AUTH)
    assert tray.model.read_only, "not an operator: polkit is what lets them"
    assert tray.toggle_action.isEnabled() and "Read-only" not in tray.toggle_action.toolTip()
    tray.show_status()
    assert tray.status_window.toggle_button.isEnabled() and tray.status_window.probe_button.isEnabled()
    tray.toggle()
    qtbot.waitUntil(lambda: any(r.method is Method.UP for r in helper.requests), timeout=WAIT_MS)

    tray.show_settings()
    dialog = tray.settings_dialog
    assert dialog is not None
    qtbot.waitUntil(lambda: all(group.isEnabled() for group in dialog.helper_groups), timeout=WAIT_MS)
    save = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert save.isEnabled() and save.toolTip() == PASSWORD_NOTE
    assert dialog.banner.isVisible() and dialog.banner.text() == PASSWORD_NOTE
    dialog.mtu_spin.setValue(1400)
    qtbot.wait(600)
    assert not [r for r in helper.requests if r.method is Method.CONFIG_SET], "no password asked while typing"
    dialog.apply()
    assert dialog.status_line.text() == "Waiting for an administrator's password\u2026"
    qtbot.waitUntil(lambda: dialog.status_line.text().startswith("Applied"), timeout=WAIT_MS)


def test_controls_a_user_may_not_use_are_greyed_with_the_reason(
    qtbot: QtBot, make_helper: Callable[..., FakeHelper], make_tray: Callable[[], TrayController]
) -> None:
    _, tray = _reader(qtbot, make_helper, make_tray, Permission.NO, Permission.NO)
    assert not tray.toggle_action.isEnabled()
    reason = tray.toggle_action.toolTip()
    assert ErrorCode.FORBIDDEN.sentence in reason and "allow org.m6t.connect for you" in reason
    tray.show_status()
    window = tray.status_window
    for button in (window.toggle_button, window.probe_button):
        assert not button.isEnabled() and button.toolTip() == reason
    tray.show_settings()
    dialog = tray.settings_dialog
    assert dialog is not None
    qtbot.waitUntil(dialog.banner.isVisible, timeout=WAIT_MS)
    assert not any(group.isEnabled() for group in dialog.helper_groups)
    assert all("allow org.m6t.configure for you" in group.toolTip() for group in dialog.helper_groups)


def test_connecting_outside_the_active_session_needs_a_rule(
    qtbot: QtBot, make_helper: Callable[..., FakeHelper], make_tray: Callable[[], TrayController]
) -> None:
    """``auth`` for connect: the helper never prompts for it, so the control is greyed and says why."""
    _, tray = _reader(qtbot, make_helper, make_tray, Permission.AUTH, Permission.AUTH)
    assert not tray.toggle_action.isEnabled()
    assert "administrator's password outside the active desktop session" in tray.toggle_action.toolTip()


def test_a_status_with_new_permissions_updates_the_controls(
    qtbot: QtBot, make_helper: Callable[..., FakeHelper], make_tray: Callable[[], TrayController]
) -> None:
    helper, tray = _reader(qtbot, make_helper, make_tray, Permission.NO, Permission.NO)
    assert not tray.toggle_action.isEnabled()
    helper.permissions = schema.permissions(Permission.YES, Permission.AUTH)
    tray.model.refresh_status()
    qtbot.waitUntil(tray.toggle_action.isEnabled, timeout=WAIT_MS)
