"""The settings dialog: loading, checks as the user types, the helper's verdict per field, applying, read-only."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv6Network

import pytest
from PySide6.QtWidgets import QDialogButtonBox
from pytestqt.qtbot import QtBot

from m6t.client.api import schema
from m6t.client.api.schema import Access, ErrorCode, Method, TunnelState
from m6t.ui.autostart import NoAutostart
from m6t.ui.preferences import NotifyLevel
from m6t.ui.settings_dialog import SettingsDialog
from m6t.ui.tray import TrayController
from tests.ui.conftest import WAIT_MS, wait_online
from tests.ui.fake_helper import FakeHelper, make_status


@pytest.fixture
def dialog(qtbot: QtBot, tray: TrayController) -> SettingsDialog:
    tray.show_settings()
    assert tray.settings_dialog is not None
    return tray.settings_dialog


def ok_enabled(dialog: SettingsDialog) -> bool:
    return dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).isEnabled()


def config_sets(helper: FakeHelper, *, dry_run: bool) -> list[dict[str, object]]:
    return [
        r.params for r in helper.requests if r.method is Method.CONFIG_SET and bool(r.params.get("dry_run")) is dry_run
    ]


def test_loads_the_helper_configuration(dialog: SettingsDialog) -> None:
    assert dialog.gateway_edit.text() == "198.51.100.2"
    assert dialog.ports_edit.text() == "3544, 4500"
    assert dialog.prefix80_radio.isChecked()
    assert dialog.prefix_edit.text() == "fd6d:3674:a1b2:0:1::/80"
    assert not dialog.ula_edit.isEnabled()
    assert dialog.mtu_spin.value() == 1472
    assert dialog.keepalive_spin.value() == 30.0
    assert dialog.default_route_check.isChecked()
    assert dialog.metric_spin.value() == 1029
    assert dialog.prefix_preview.text() == "fd6d:3674:a1b2:0:1::/80"
    assert not dialog.banner.isVisible()
    assert all(group.isEnabled() for group in dialog.helper_groups)
    assert not dialog.is_dirty()


@pytest.mark.parametrize(
    ("widget", "key", "text", "needle"),
    [
        ("gateway_edit", "gateway.address", "198.51.100.300", "not a valid IPv4 address"),
        ("ports_edit", "gateway.ports", "3544, 99999", "must be in the range 1..65535, not 99999"),
        ("prefix_edit", "tunnel.prefix", "fd6d:3674:a1b2::/64", "must be a /80"),
    ],
)
def test_checks_as_the_user_types(dialog: SettingsDialog, widget: str, key: str, text: str, needle: str) -> None:
    getattr(dialog, widget).setText(text)
    assert needle in dialog.field_error(key)
    assert not ok_enabled(dialog)
    assert dialog.prefix_preview.text() == "\u2013" or key != "tunnel.prefix"


def test_error_clears_when_fixed(dialog: SettingsDialog) -> None:
    dialog.ports_edit.setText("0")
    assert dialog.field_error("gateway.ports")
    dialog.ports_edit.setText("4500")
    assert dialog.field_error("gateway.ports") == ""
    assert ok_enabled(dialog)


def test_extra_prefixes_checked(dialog: SettingsDialog) -> None:
    dialog.prefixes_edit.setPlainText("fd00:ab::/64\nnot-a-prefix")
    assert "not-a-prefix" in dialog.field_error("routes.prefixes")


def test_generate_ula_switches_to_parts(dialog: SettingsDialog) -> None:
    dialog.mn_spin.setValue(7)
    dialog.generate_ula()
    ula = IPv6Network(dialog.ula_edit.text())
    assert ula.prefixlen == 48 and ula.subnet_of(IPv6Network("fd00::/8"))
    assert dialog.parts_radio.isChecked() and dialog.ula_edit.isEnabled() and not dialog.prefix_edit.isEnabled()
    preview = IPv6Network(dialog.prefix_preview.text())
    assert preview.prefixlen == 80 and preview.subnet_of(ula)
    assert (int(preview.network_address) >> 48) & 0xFFFF == 7
    dialog.generate_ula()
    assert IPv6Network(dialog.ula_edit.text()) != ula, "a new draw (equal only by a 2**-40 chance)"


def test_helper_problems_land_next_to_their_field(qtbot: QtBot, dialog: SettingsDialog, helper: FakeHelper) -> None:
    dialog.gateway_edit.setText("gw.unresolvable.example")
    dialog.ports_edit.setText("4500, 80")
    qtbot.waitUntil(lambda: dialog.field_error("gateway.address") == "cannot be resolved", timeout=WAIT_MS)
    assert dialog.field_error("gateway.ports") == "80 is a privileged port"
    # The dry run applied nothing.
    assert helper.config["gateway"]["address"] == "198.51.100.2"
    assert config_sets(helper, dry_run=True)
    # Typing on clears the helper's now stale verdict.
    dialog.gateway_edit.setText("gw.example.org")
    assert dialog.field_error("gateway.address") == ""


def test_apply_sends_the_whole_config_and_closes_on_ok(
    qtbot: QtBot, dialog: SettingsDialog, helper: FakeHelper
) -> None:
    dialog.mtu_spin.setValue(1400)
    dialog.ports_edit.setText("4500, 3544")
    dialog.prefixes_edit.setPlainText("fd00:ab::/64")
    dialog.keepalive_spin.setValue(15)
    assert dialog.is_dirty()
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)
    assert helper.config["tunnel"]["mtu"] == 1400
    assert helper.config["tunnel"]["keepalive_interval"] == 15
    assert helper.config["gateway"]["ports"] == [4500, 3544]
    assert helper.config["routes"]["prefixes"] == ["fd00:ab::/64"]
    assert helper.config["helper"] == {"operator_group": "m6t", "autoconnect": False}, "unshown keys are kept"
    assert len(config_sets(helper, dry_run=False)) == 1


def test_several_gateways_in_order(qtbot: QtBot, dialog: SettingsDialog, helper: FakeHelper) -> None:
    # A list from the helper reads as one line, in order.
    helper.config["gateway"]["address"] = ["gw1.example.org", "198.51.100.3"]
    helper.push_event(schema.EventKind.CONFIG, {"changed": ["gateway.address"]})
    qtbot.waitUntil(lambda: dialog.gateway_edit.text() == "gw1.example.org, 198.51.100.3", timeout=WAIT_MS)
    dialog.gateway_edit.setText("gw1.example.org, gw1.example.org")
    assert "repeats gw1.example.org" in dialog.field_error("gateway.address")
    dialog.gateway_edit.setText("198.51.100.3 gw2.example.org, gw1.example.org")
    assert dialog.field_error("gateway.address") == ""
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)
    assert helper.config["gateway"]["address"] == ["198.51.100.3", "gw2.example.org", "gw1.example.org"]


def test_switching_prefix_form_removes_the_other(qtbot: QtBot, dialog: SettingsDialog, helper: FakeHelper) -> None:
    dialog.parts_radio.setChecked(True)
    dialog.ula_edit.setText("fd6d:3674:a1b2::/48")
    dialog.subnet_spin.setValue(0)
    dialog.mn_spin.setValue(1)
    dialog.buttons.button(QDialogButtonBox.StandardButton.Apply).click()
    qtbot.waitUntil(lambda: "Applied" in dialog.status_line.text(), timeout=WAIT_MS)
    tunnel = helper.config["tunnel"]
    assert "prefix" not in tunnel
    assert (tunnel["ula_prefix"], tunnel["subnet_id"], tunnel["mn_id"]) == ("fd6d:3674:a1b2::/48", 0, 1)
    assert dialog.isVisible()


def test_apply_refused_shows_problems_and_keeps_the_dialog(
    qtbot: QtBot, dialog: SettingsDialog, helper: FakeHelper
) -> None:
    helper.validator = lambda config: [
        {"key": "tunnel.mtu", "message": "larger than the interface allows"},
        {"key": "helper.operator_group", "message": "no such group"},
    ]
    dialog.mtu_spin.setValue(9000)
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    qtbot.waitUntil(lambda: dialog.field_error("tunnel.mtu") == "larger than the interface allows", timeout=WAIT_MS)
    assert dialog.isVisible()
    assert "helper.operator_group: no such group" in dialog.general_error.text()
    assert helper.config["tunnel"]["mtu"] == 1472


def test_other_helper_errors_shown_above_the_fields(qtbot: QtBot, dialog: SettingsDialog, helper: FakeHelper) -> None:
    helper.forced_errors[Method.CONFIG_SET] = schema.error_info(ErrorCode.CONFIG_WRITE_FAILED, hint="Disk full?")
    dialog.mtu_spin.setValue(1400)
    dialog.buttons.button(QDialogButtonBox.StandardButton.Apply).click()
    qtbot.waitUntil(lambda: "Disk full?" in dialog.general_error.text(), timeout=WAIT_MS)
    assert ErrorCode.CONFIG_WRITE_FAILED.sentence in dialog.general_error.text()


def test_desktop_preferences(qtbot: QtBot, dialog: SettingsDialog, helper: FakeHelper) -> None:
    dialog.autostart_check.setChecked(True)
    dialog.notify_combo.setCurrentIndex(dialog.notify_combo.findData(NotifyLevel.ERRORS.value))
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    assert not dialog.isVisible()
    assert dialog.autostart.is_enabled()
    assert dialog.preferences.notify_level is NotifyLevel.ERRORS
    assert not config_sets(helper, dry_run=False), "nothing changed on the helper's side"
    dialog.load()
    dialog.autostart_check.setChecked(False)
    dialog.apply()
    assert not dialog.autostart.is_enabled()


def test_autostart_failure_is_shown(dialog: SettingsDialog, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(enabled: bool) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(dialog.autostart, "set_enabled", refuse)
    dialog.autostart_check.setChecked(True)
    dialog.apply(close=True)
    assert dialog.field_error("desktop.autostart") == "Could not change it: Permission denied"


def test_unsupported_autostart_is_disabled(qtbot: QtBot, tray: TrayController) -> None:
    dialog = SettingsDialog(tray.model, tray.preferences, NoAutostart())
    qtbot.addWidget(dialog)
    assert not dialog.autostart_check.isEnabled()


def test_config_changed_elsewhere_is_reloaded(qtbot: QtBot, dialog: SettingsDialog, helper: FakeHelper) -> None:
    helper.config["tunnel"]["mtu"] = 1380
    helper.push_event(schema.EventKind.CONFIG, {"changed": ["tunnel.mtu"]})
    qtbot.waitUntil(lambda: dialog.mtu_spin.value() == 1380, timeout=WAIT_MS)


def test_read_only_user_sees_settings_but_cannot_change_them(
    qtbot: QtBot, make_helper: Callable[..., FakeHelper], make_tray: Callable[[], TrayController]
) -> None:
    helper = make_helper(Access.READ_ONLY)
    helper.status = make_status(TunnelState.CONNECTED)
    tray = make_tray()
    wait_online(qtbot, tray.model, helper)
    tray.show_settings()
    dialog = tray.settings_dialog
    assert dialog is not None
    assert dialog.gateway_edit.text() == "198.51.100.2", "everything visible"
    assert not any(group.isEnabled() for group in dialog.helper_groups)
    assert ErrorCode.FORBIDDEN.sentence in dialog.banner.text() and dialog.banner.isVisible()
    # This desktop's own preferences stay the user's to change.
    assert dialog.notify_combo.isEnabled() and dialog.autostart_check.isEnabled() and ok_enabled(dialog)
    dialog.gateway_edit.setText("203.0.113.99")
    qtbot.wait(500)
    assert not config_sets(helper, dry_run=True), "no dry run for a user who may not change anything"


def test_helper_unreachable_disables_helper_settings(qtbot: QtBot, dialog: SettingsDialog, helper: FakeHelper) -> None:
    helper.stop()
    qtbot.waitUntil(lambda: not any(group.isEnabled() for group in dialog.helper_groups), timeout=WAIT_MS)
    assert "not reachable" in dialog.banner.text()
