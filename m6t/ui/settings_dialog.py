"""Settings: the helper's tunnel configuration (through ``config.set``) and this desktop's own preferences.

Each field is checked as it is typed, by the helper's own rules (:mod:`m6t.ui.validation`); once every field
reads well the helper validates the whole configuration in a dry run, and its problems appear next to the
field they name.  Nothing reaches the helper until Apply/OK, and then as one ``config.set`` the helper takes
or refuses whole.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from ipaddress import IPv6Network
from typing import Any, Final, cast

from PySide6.QtCore import QTimer
from PySide6.QtNetwork import QNetworkInterface
from PySide6.QtWidgets import (
    QAbstractButton,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from m6t.client.api import config_rules as rules
from m6t.client.api import schema
from m6t.client.api.schema import ErrorCode, Method, Permission
from m6t.protocol import (
    DEFAULT_MTU,
    KEEPALIVE_INTERVAL_S,
    AddressingError,
    eui64_from_mac,
    generate_ula_prefix,
    prefix80_from_parts,
    split_prefix80,
)
from m6t.ui import validation
from m6t.ui.access_box import AccessBox
from m6t.ui.autostart import Autostart
from m6t.ui.connection import Outcome
from m6t.ui.errors import error_text
from m6t.ui.i18n import QT_TRANSLATE_NOOP
from m6t.ui.icons import app_icon
from m6t.ui.model import CONFIGURE, TunnelModel
from m6t.ui.preferences import NOTIFY_LABELS, NotifyLevel, Preferences, notify_label
from m6t.ui.validation import FieldError, TunnelForm
from m6t.ui.widgets import banner_label, describe, error_label

DRY_RUN_DELAY_MS: Final = 400
"""Wait for a pause in typing before asking the helper, so it validates once per thought, not per key."""
PASSWORD_NOTE: Final = QT_TRANSLATE_NOOP(
    "SettingsDialog", "Saving asks for an administrator's password (your desktop's polkit agent shows the dialog)."
)

# Keys the dialog edits; a helper problem about any other key is shown above the fields.
FIELD_KEYS: Final = (
    "gateway.address",
    "gateway.ports",
    "tunnel.prefix",
    "tunnel.ula_prefix",
    "tunnel.subnet_id",
    "tunnel.mn_id",
    "tunnel.mtu",
    "tunnel.keepalive_interval",
    "routes.default",
    "routes.metric",
    "routes.prefixes",
    "desktop.autostart",
)
MAX_METRIC_SPIN: Final = min(rules.MAX_METRIC, 2_147_483_647)
"""QSpinBox holds a C int; route metrics beyond it are never needed for a last-resort route."""


def local_eui64() -> bytes:
    """An EUI-64 for RFC 4193's Global ID: from a local MAC when there is one, else random bytes.

    RFC 4193 3.2.2 asks for a machine-specific identifier; where none can be read, 64 random bits
    serve the same purpose (uniqueness) at least as well.
    """
    for interface in QNetworkInterface.allInterfaces():
        if interface.flags() & QNetworkInterface.InterfaceFlag.IsLoopBack:
            continue
        mac = interface.hardwareAddress().replace(":", "").replace("-", "")
        if len(mac) == 12:
            raw = bytes.fromhex(mac)
            if any(raw):
                return eui64_from_mac(raw)
    return secrets.token_bytes(8)


class SettingsDialog(QDialog):
    def __init__(
        self,
        model: TunnelModel,
        preferences: Preferences,
        autostart: Autostart,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.model = model
        self.preferences = preferences
        self.autostart = autostart
        self.setWindowTitle(self.tr("m6t settings"))
        self.setWindowIcon(app_icon())
        self._errors: dict[str, QLabel] = {}
        self._error_fields: dict[str, QWidget] = {}
        self._local_errors: dict[str, str] = {}
        self._helper_errors: dict[str, str] = {}
        self._desktop_errors: dict[str, str] = {}
        self._loaded: dict[str, Any] | None = None
        self._generation = 0
        self._loading = False
        self._close_after_apply = False

        layout = QVBoxLayout(self)
        # Grow with the messages that appear under fields, instead of clipping them.
        layout.setSizeConstraint(QLayout.SizeConstraint.SetMinimumSize)
        self.banner = banner_label()
        layout.addWidget(self.banner)
        self.general_error = error_label()
        layout.addWidget(self.general_error)
        grid = QGridLayout()
        self.helper_groups = [self._build_gateway(), self._build_prefix(), self._build_tunnel(), self._build_routes()]
        grid.addWidget(self.helper_groups[0], 0, 0)
        grid.addWidget(self.helper_groups[1], 1, 0)
        grid.addWidget(self.helper_groups[2], 0, 1)
        grid.addWidget(self.helper_groups[3], 1, 1)
        grid.addWidget(self._build_desktop(), 2, 0, 1, 2)
        self.access_box = AccessBox(model)
        grid.addWidget(self.access_box, 3, 0, 1, 2)
        layout.addLayout(grid)
        self.status_line = QLabel()
        self.status_line.setWordWrap(True)
        layout.addWidget(self.status_line)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Apply
            | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.clicked.connect(self._button_clicked)
        for which, name, description in (
            (QDialogButtonBox.StandardButton.Ok, self.tr("OK"), self.tr("Save the settings and close")),
            (QDialogButtonBox.StandardButton.Apply, self.tr("Apply"), self.tr("Save the settings")),
            (QDialogButtonBox.StandardButton.Cancel, self.tr("Cancel"), self.tr("Close without saving")),
        ):
            describe(self.buttons.button(which), name, description)
        layout.addWidget(self.buttons)

        self._dry_run_timer = QTimer(self)
        self._dry_run_timer.setSingleShot(True)
        self._dry_run_timer.setInterval(DRY_RUN_DELAY_MS)
        self._dry_run_timer.timeout.connect(self._dry_run)
        model.changed.connect(self._refresh_access)
        model.config_loaded.connect(self._config_arrived)
        self.load()

    # ---------------------------------------------------------------------------------------- building

    def _row(self, form: QFormLayout, key: str, label: str, widget: QWidget, description: str) -> None:
        """``label`` with its mnemonic (``&Address:``): the form makes it the field's buddy, so Alt+A goes there."""
        form.addRow(label, widget)
        describe(widget, label.rstrip(" :"), description)
        error = error_label()
        describe(error, self.tr("{field}: problem").format(field=label.replace("&", "").rstrip(" :")), description)
        error.setObjectName(f"error:{key}")
        self._errors[key] = error
        self._error_fields[key] = widget
        form.addRow("", error)

    def _build_gateway(self) -> QGroupBox:
        box = QGroupBox(self.tr("Gateway"))
        form = QFormLayout(box)
        self.gateway_edit = QLineEdit()
        self.gateway_edit.setPlaceholderText(
            self.tr("IPv4 address or host name; several: gw1.example.org, 198.51.100.2")
        )
        gateway_help = self.tr("Gateways in order of preference: the next one is used when one does not answer.")
        self.gateway_edit.setToolTip(gateway_help)
        self.ports_edit = QLineEdit()
        self.ports_edit.setPlaceholderText(self.tr("e.g. 3544, 4500"))
        ports_help = self.tr("UDP ports, in the order they are tried when one fails.")
        self.ports_edit.setToolTip(ports_help)
        self._row(form, "gateway.address", self.tr("&Addresses (in order):"), self.gateway_edit, gateway_help)
        self._row(form, "gateway.ports", self.tr("&Ports (in order):"), self.ports_edit, ports_help)
        for edit in (self.gateway_edit, self.ports_edit):
            edit.textChanged.connect(self._edited)
        return box

    def _build_prefix(self) -> QGroupBox:
        box = QGroupBox(self.tr("Prefix"))
        form = QFormLayout(box)
        self.prefix80_radio = QRadioButton(self.tr("A /&80 prefix"))
        self.parts_radio = QRadioButton(self.tr("&ULA /48 + subnet ID + MN ID"))
        describe(self.prefix80_radio, self.tr("A /80 prefix"), self.tr("Give the tunnel's /80 prefix whole"))
        describe(
            self.parts_radio,
            self.tr("ULA /48 + subnet ID + MN ID"),
            self.tr("Build the /80 from a ULA /48, a subnet ID and a mobile node ID"),
        )
        self.prefix_mode = QButtonGroup(self)
        self.prefix_mode.addButton(self.prefix80_radio)
        self.prefix_mode.addButton(self.parts_radio)
        self.prefix80_radio.setChecked(True)
        form.addRow(self.prefix80_radio)
        self.prefix_edit = QLineEdit()
        self.prefix_edit.setPlaceholderText("fd6d:3674:a1b2:0:1::/80")
        self._row(form, "tunnel.prefix", self.tr("/80 pre&fix:"), self.prefix_edit, self.tr("The tunnel's /80 prefix"))
        form.addRow(self.parts_radio)
        ula_row = QWidget()
        ula_layout = QHBoxLayout(ula_row)
        ula_layout.setContentsMargins(0, 0, 0, 0)
        self.ula_edit = QLineEdit()
        self.ula_edit.setPlaceholderText("fd6d:3674:a1b2::/48")
        self.generate_button = QPushButton(self.tr("&Generate ULA"))
        generate_help = self.tr("A new random ULA /48 by RFC 4193 (time and a local MAC, hashed).")
        self.generate_button.setToolTip(generate_help)
        describe(self.generate_button, self.tr("Generate ULA"), generate_help)
        describe(ula_row, self.tr("ULA /48"), self.tr("The ULA /48 and a button to draw a new one"))
        self.generate_button.clicked.connect(self.generate_ula)
        ula_layout.addWidget(self.ula_edit, 1)
        ula_layout.addWidget(self.generate_button)
        self._row(form, "tunnel.ula_prefix", self.tr("U&LA /48:"), ula_row, self.tr("A unique local /48 (RFC 4193)"))
        describe(self.ula_edit, self.tr("ULA /48"), self.tr("A unique local /48 (RFC 4193)"))
        # The row's label names the field, not the box around it: Alt+L lands in the text.
        ula_label = form.labelForField(ula_row)
        if isinstance(ula_label, QLabel):
            ula_label.setBuddy(self.ula_edit)
        self.subnet_spin = QSpinBox()
        self.subnet_spin.setRange(0, rules.MAX_ID)
        self.mn_spin = QSpinBox()
        self.mn_spin.setRange(0, rules.MAX_ID)
        self._row(
            form, "tunnel.subnet_id", self.tr("&Subnet ID:"), self.subnet_spin, self.tr("The subnet ID inside the /48")
        )
        self._row(
            form, "tunnel.mn_id", self.tr("&MN ID:"), self.mn_spin, self.tr("This mobile node's ID in the subnet")
        )
        self.prefix_preview = QLabel()
        describe(self.prefix_preview, self.tr("Resulting /80"), self.tr("The /80 prefix these values make"))
        form.addRow(self.tr("Resulting /80:"), self.prefix_preview)
        self.prefix80_radio.toggled.connect(self._edited)
        for edit in (self.prefix_edit, self.ula_edit):
            edit.textChanged.connect(self._edited)
        for spin in (self.subnet_spin, self.mn_spin):
            spin.valueChanged.connect(self._edited)
        return box

    def _build_tunnel(self) -> QGroupBox:
        box = QGroupBox(self.tr("Tunnel"))
        form = QFormLayout(box)
        self.mtu_spin = QSpinBox()
        self.mtu_spin.setRange(rules.MIN_MTU, rules.MAX_MTU)
        self.mtu_spin.setSuffix(self.tr(" bytes"))
        self.keepalive_spin = QDoubleSpinBox()
        self.keepalive_spin.setRange(rules.KEEPALIVE_MIN_S, rules.KEEPALIVE_MAX_S)
        self.keepalive_spin.setDecimals(1)
        self.keepalive_spin.setSuffix(" s")
        self._row(
            form, "tunnel.mtu", self.tr("M&TU:"), self.mtu_spin, self.tr("The largest IPv6 packet the tunnel carries")
        )
        self._row(
            form,
            "tunnel.keepalive_interval",
            self.tr("&Keepalive interval:"),
            self.keepalive_spin,
            self.tr("How long the tunnel may be silent before a keepalive keeps the NAT mapping open"),
        )
        self.mtu_spin.valueChanged.connect(self._edited)
        self.keepalive_spin.valueChanged.connect(self._edited)
        return box

    def _build_routes(self) -> QGroupBox:
        box = QGroupBox(self.tr("Routes"))
        form = QFormLayout(box)
        self.default_route_check = QCheckBox(self.tr("Route all &IPv6 (::/0) through the tunnel"))
        self.metric_spin = QSpinBox()
        self.metric_spin.setRange(rules.MIN_METRIC, MAX_METRIC_SPIN)
        self.prefixes_edit = QPlainTextEdit()
        self.prefixes_edit.setPlaceholderText(self.tr("One IPv6 prefix per line, e.g. fd00:ab::/64"))
        self.prefixes_edit.setFixedHeight(70)
        # A list of prefixes has no use for a typed tab: Tab moves on.
        self.prefixes_edit.setTabChangesFocus(True)
        self._row(
            form,
            "routes.default",
            self.tr("Default route:"),
            self.default_route_check,
            self.tr("Send all IPv6 traffic through the tunnel"),
        )
        self._row(
            form, "routes.metric", self.tr("Metri&c:"), self.metric_spin, self.tr("The routes' metric: lower wins")
        )
        self._row(
            form,
            "routes.prefixes",
            self.tr("E&xtra prefixes:"),
            self.prefixes_edit,
            self.tr("More IPv6 prefixes to route through the tunnel, one per line"),
        )
        self.default_route_check.toggled.connect(self._edited)
        self.metric_spin.valueChanged.connect(self._edited)
        self.prefixes_edit.textChanged.connect(self._edited)
        return box

    def _build_desktop(self) -> QGroupBox:
        box = QGroupBox(self.tr("This desktop"))
        form = QFormLayout(box)
        self.autostart_check = QCheckBox(self.tr("Start the m6t tray &when I log in"))
        if not self.autostart.supported:
            self.autostart_check.setEnabled(False)
            self.autostart_check.setToolTip(self.tr("This desktop has no start-at-login mechanism m6t knows."))
        self._row(
            form,
            "desktop.autostart",
            self.tr("Start at login:"),
            self.autostart_check,
            self.tr("Whether the tray starts with your desktop session"),
        )
        self.notify_combo = QComboBox()
        for level in NOTIFY_LABELS:
            self.notify_combo.addItem(notify_label(level), level.value)
        describe(self.notify_combo, self.tr("Notifications"), self.tr("Which events the tray tells you about"))
        form.addRow(self.tr("&Notifications:"), self.notify_combo)
        return box

    # ---------------------------------------------------------------------------------------- loading

    def load(self) -> None:
        """Fill every field from the helper's configuration and this user's preferences."""
        self._loading = True
        try:
            self.autostart_check.setChecked(self.autostart.is_enabled())
            self.notify_combo.setCurrentIndex(max(0, self.notify_combo.findData(self.preferences.notify_level.value)))
            config = self.model.config
            self._loaded = config
            if config is not None:
                self._fill(config)
        finally:
            self._loading = False
        self._helper_errors.clear()
        self._validate()
        self._refresh_access()

    def _fill(self, config: dict[str, Any]) -> None:
        gateway, tunnel, routes = (config.get(name, {}) for name in ("gateway", "tunnel", "routes"))
        address = gateway.get("address", "")
        self.gateway_edit.setText(", ".join(map(str, address)) if isinstance(address, list) else str(address))
        self.ports_edit.setText(", ".join(str(port) for port in gateway.get("ports", [])))
        uses_parts = "ula_prefix" in tunnel
        # Both forms are filled, the unused one with the equivalent of the used one, so switching form
        # starts from the same prefix rather than from blank fields.
        prefix, ula, subnet_id, mn_id = str(tunnel.get("prefix", "")), str(tunnel.get("ula_prefix", "")), 0, 0
        try:
            if uses_parts:
                subnet_id, mn_id = int(tunnel.get("subnet_id", 0)), int(tunnel.get("mn_id", 0))
                prefix = str(prefix80_from_parts(IPv6Network(ula), subnet_id, mn_id))
            else:
                ula48, subnet_id, mn_id = split_prefix80(IPv6Network(prefix))
                ula = str(ula48)
        except (AddressingError, ValueError):
            pass
        self.prefix_edit.setText(prefix)
        self.ula_edit.setText(ula)
        self.subnet_spin.setValue(subnet_id)
        self.mn_spin.setValue(mn_id)
        (self.parts_radio if uses_parts else self.prefix80_radio).setChecked(True)
        self.mtu_spin.setValue(int(tunnel.get("mtu", DEFAULT_MTU)))
        self.keepalive_spin.setValue(float(tunnel.get("keepalive_interval", KEEPALIVE_INTERVAL_S)))
        self.default_route_check.setChecked(bool(routes.get("default", True)))
        self.metric_spin.setValue(min(int(routes.get("metric", 1029)), MAX_METRIC_SPIN))
        self.prefixes_edit.setPlainText("\n".join(str(p) for p in routes.get("prefixes", [])))

    def _config_arrived(self) -> None:
        # Someone changed the configuration (perhaps through the CLI): take it in unless the user is editing.
        if self._loaded is None or not self.is_dirty():
            self.load()

    # ---------------------------------------------------------------------------------------- checking

    def _edited(self) -> None:
        if self._loading:
            return
        self._helper_errors.clear()
        self._validate()
        if not self._local_errors and self.can_change_helper() and self.is_dirty():
            self._generation += 1
            self._dry_run_timer.start()

    def _form_values(self) -> TunnelForm:
        """The fields as a :class:`TunnelForm`; records a message per bad field and raises if any."""
        errors: dict[str, str] = {}

        def check(key: str, read: Callable[[], Any]) -> Any:
            try:
                return read()
            except FieldError as exc:
                errors[key] = str(exc)
                return None

        address = check("gateway.address", lambda: validation.gateway_address(self.gateway_edit.text()))
        ports = check("gateway.ports", lambda: validation.ports(self.ports_edit.text()))
        prefix = ula = None
        if self.prefix80_radio.isChecked():
            prefix = check("tunnel.prefix", lambda: validation.prefix80(self.prefix_edit.text()))
        else:
            ula = check("tunnel.ula_prefix", lambda: validation.ula48(self.ula_edit.text()))
        prefixes = check("routes.prefixes", lambda: validation.prefix_list(self.prefixes_edit.toPlainText()))
        self._local_errors = errors
        if errors:
            raise FieldError("; ".join(errors.values()))
        return TunnelForm(
            gateway_address=address,
            ports=ports,
            prefix=prefix,
            ula_prefix=ula,
            subnet_id=None if prefix is not None else self.subnet_spin.value(),
            mn_id=None if prefix is not None else self.mn_spin.value(),
            mtu=self.mtu_spin.value(),
            keepalive_interval=self.keepalive_spin.value(),
            default_route=self.default_route_check.isChecked(),
            metric=self.metric_spin.value(),
            prefixes=prefixes,
        )

    def _validate(self) -> TunnelForm | None:
        parts = self.parts_radio.isChecked()
        self.prefix_edit.setEnabled(not parts)
        for widget in (self.ula_edit, self.generate_button, self.subnet_spin, self.mn_spin):
            widget.setEnabled(parts)
        try:
            form = self._form_values()
        except FieldError:
            form = None
        self._show_errors()
        self.prefix_preview.setText("\u2013" if form is None else str(form.prefix80))
        self._refresh_buttons()
        return form

    def _show_errors(self) -> None:
        for key, label in self._errors.items():
            text = self._local_errors.get(key) or self._helper_errors.get(key) or self._desktop_errors.get(key)
            label.setText(text or "")
            label.setVisible(bool(text))
            # A form layout sizes a wrapped label for its preferred width, not the narrower column it gets,
            # and clips the last line: reserve the height the text needs at the field's actual width.
            width = self._error_fields[key].width()
            label.setMinimumHeight(label.heightForWidth(width) if text and width > 0 else 0)
        others = [
            f"{key or self.tr('configuration')}: {message}"
            for key, message in self._helper_errors.items()
            if key not in self._errors
        ]
        self.general_error.setText("\n".join(others))
        self.general_error.setVisible(bool(others))

    def field_error(self, key: str) -> str:
        label = self._errors[key]
        return label.text() if label.isVisibleTo(self) else ""

    def is_dirty(self) -> bool:
        if self._loaded is None:
            return False
        try:
            form = self._form_values()
        except FieldError:
            return True
        return validation.merged_config(self._loaded, form) != self._loaded

    def _merged(self) -> dict[str, Any] | None:
        if self._loaded is None:
            return None
        try:
            return validation.merged_config(self._loaded, self._form_values())
        except FieldError:
            return None

    def _dry_run(self) -> None:
        config = self._merged()
        # Where a change needs the password, checking one as it is typed would ask for it at every pause.
        if config is None or not self.can_change_helper() or self.needs_password():
            return
        generation = self._generation

        def done(outcome: Outcome) -> None:
            if generation != self._generation:
                return  # the user typed on; a newer dry run is coming
            if not outcome.ok and outcome.error is not None:
                self._take_helper_error(outcome.error)

        self.model.call(Method.CONFIG_SET, {"config": config, "dry_run": True}, done)

    def _take_helper_error(self, error: schema.ErrorInfo) -> None:
        problems = error.get("problems") or []
        if error.get("code") == ErrorCode.CONFIG_INVALID and problems:
            for problem in problems:
                # "gateway.ports[1]" concerns the ports field.
                key = problem.get("key", "").split("[", 1)[0]
                self._helper_errors[key] = problem.get("message", "")
        else:
            self._helper_errors[""] = error_text(error)
        self._show_errors()

    # ---------------------------------------------------------------------------------------- access

    def can_change_helper(self) -> bool:
        return self.blocked_reason() is None

    def blocked_reason(self) -> str | None:
        if not self.model.reachable:
            why = self.model.offline_reason or ""
            return (
                self.tr("The helper is not reachable, so its settings cannot be changed now. {why}")
                .format(why=why)
                .strip()
            )
        refusal = self.model.refusal(CONFIGURE)
        if refusal is not None:
            return refusal
        if self._loaded is None:
            return self.tr("Reading the configuration from the helper…")
        return None

    def _refresh_access(self) -> None:
        reason = self.blocked_reason()
        for group in self.helper_groups:
            group.setEnabled(reason is None)
            group.setToolTip(reason or "")
        note = reason or (self.tr(PASSWORD_NOTE) if self.needs_password() else None)
        self.banner.setText(note or "")
        self.banner.setVisible(note is not None)
        if self._loaded is None and self.model.config is not None:
            self.load()
        self._refresh_buttons()

    def needs_password(self) -> bool:
        """Saving lets polkit's agent ask for an administrator's password (the helper waits for it)."""
        return self.model.permission(CONFIGURE) == Permission.AUTH.value

    def _refresh_buttons(self) -> None:
        ok = not self._local_errors or not self.can_change_helper()
        asks = self.needs_password() and self.can_change_helper()
        for which in (QDialogButtonBox.StandardButton.Ok, QDialogButtonBox.StandardButton.Apply):
            self.buttons.button(which).setEnabled(ok)
            self.buttons.button(which).setToolTip(self.tr(PASSWORD_NOTE) if asks else "")

    # ---------------------------------------------------------------------------------------- actions

    def generate_ula(self) -> None:
        prefix = generate_ula_prefix(time.time(), local_eui64())
        self.parts_radio.setChecked(True)
        self.ula_edit.setText(str(prefix))

    def _button_clicked(self, button: QAbstractButton) -> None:
        role = self.buttons.standardButton(button)
        if role == QDialogButtonBox.StandardButton.Cancel:
            self.reject()
        else:
            self.apply(close=role == QDialogButtonBox.StandardButton.Ok)

    def apply(self, *, close: bool = False) -> None:
        if not self._apply_desktop():
            return
        config = self._merged() if self.can_change_helper() and self.is_dirty() else None
        if config is None:
            self.status_line.setText(self.tr("Saved."))
            if close:
                self.accept()
            return
        self._generation += 1
        self._dry_run_timer.stop()
        self.status_line.setText(
            self.tr("Waiting for an administrator's password…") if self.needs_password() else self.tr("Applying…")
        )
        for which in (QDialogButtonBox.StandardButton.Ok, QDialogButtonBox.StandardButton.Apply):
            self.buttons.button(which).setEnabled(False)

        def done(outcome: Outcome) -> None:
            self._refresh_buttons()
            if outcome.ok and isinstance(outcome.result, dict):
                result = cast(schema.ConfigSetResult, outcome.result)
                self.model.config = result.get("config", config)
                self._loaded = self.model.config
                changed = ", ".join(result.get("changed", [])) or self.tr("nothing")
                self.status_line.setText(self.tr("Applied (changed: {changed}).").format(changed=changed))
                if close:
                    self.accept()
                return
            self.status_line.setText("")
            if outcome.error is not None:
                self._take_helper_error(outcome.error)

        self.model.call(Method.CONFIG_SET, {"config": config}, done)

    def _apply_desktop(self) -> bool:
        self.preferences.notify_level = NotifyLevel(str(self.notify_combo.currentData()))
        wanted = self.autostart_check.isChecked()
        if self.autostart.supported and wanted != self.autostart.is_enabled():
            try:
                self.autostart.set_enabled(wanted)
            except OSError as exc:
                self._desktop_errors["desktop.autostart"] = self.tr("Could not change it: {why}").format(
                    why=exc.strerror or exc
                )
                self._show_errors()
                return False
        self._desktop_errors.clear()
        self._show_errors()
        return True
