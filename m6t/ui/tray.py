"""The tray icon, its menu and the notifications: a view of :class:`TunnelModel` like the windows."""

from __future__ import annotations

import time
from typing import Any, Final, cast

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction, QActionGroup, QGuiApplication
from PySide6.QtWidgets import QApplication, QMenu, QSystemTrayIcon

from m6t.client.api import schema
from m6t.client.api.schema import ErrorCode
from m6t.ui.autostart import Autostart
from m6t.ui.connection import Outcome
from m6t.ui.errors import error_text
from m6t.ui.icons import state_icon
from m6t.ui.model import TunnelModel
from m6t.ui.preferences import NOTIFY_LABELS, NotifyLevel, Preferences, notify_label
from m6t.ui.settings_dialog import SettingsDialog
from m6t.ui.state import (
    TrayState,
    TunnelLine,
    header_label,
    reason_label,
    tooltip,
    tray_label,
    tray_state,
    tunnel_line,
    wants_disconnect_action,
)
from m6t.ui.status_window import TAB_LOG, StatusWindow

REPEAT_ERROR_S: Final = 60.0
"""The same error again within this long is not notified again: a flapping link would flood the desktop."""
QUIET_AFTER_REGENERATION_S: Final = 60.0
"""A reconnection right after a new address was announced needs no second bubble."""
MESSAGE_MS: Final = 6000


class TrayController(QObject):
    notified = Signal(str, str)
    """Every notification actually shown: title, text (tests and the screenshot script listen)."""

    def __init__(
        self,
        model: TunnelModel,
        preferences: Preferences,
        autostart: Autostart,
        start_hint: str,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.model = model
        self.preferences = preferences
        self.autostart = autostart
        self.start_hint = start_hint
        self.status_window = StatusWindow(model, start_hint)
        self.settings_dialog: SettingsDialog | None = None
        self._shown_state: TrayState | None = None
        self.tunnel_actions: list[QAction] = []
        """One disabled line per tunnel under the header, when there are several."""
        self._shown_tunnels: tuple[TunnelLine, ...] = ()
        self._recent_errors: dict[int, float] = {}
        self._last_regeneration_notice = -QUIET_AFTER_REGENERATION_S
        self.icon = QSystemTrayIcon(self)
        self.menu = QMenu()
        self.menu.setToolTipsVisible(True)
        self._build_menu()
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._activated)
        # No timer refreshes the tooltip: its time connected is to the minute and follows the helper's events
        # (a keepalive answer at least every interval), so an idle tray sleeps until something happens.

        model.changed.connect(self.refresh)
        model.connected_to_gateway.connect(self._on_connected)
        model.address_regenerated.connect(self._on_regenerated)
        model.error_raised.connect(self._on_error)
        model.reachability_changed.connect(self._on_reachability)
        preferences.changed.connect(self._sync_notify_menu)
        self.refresh()

    # ---------------------------------------------------------------------------------------- menu

    def _build_menu(self) -> None:
        menu = self.menu
        self.header_action = menu.addAction("m6t")
        self.header_action.setEnabled(False)
        self.reason_action = menu.addAction("")
        self.reason_action.setEnabled(False)
        self._tunnels_end = menu.addSeparator()
        self.toggle_action = menu.addAction(self.tr("&Connect"))
        self.toggle_action.triggered.connect(self.toggle)
        self.status_action = menu.addAction(self.tr("&Status…"))
        self.status_action.triggered.connect(self.show_status)
        self.settings_action = menu.addAction(self.tr("S&ettings…"))
        self.settings_action.triggered.connect(self.show_settings)
        menu.addSeparator()
        self.copy_action = menu.addAction(self.tr("Copy tunnel &address"))
        self.copy_action.triggered.connect(self.copy_address)
        self.log_action = menu.addAction(self.tr("Open &log…"))
        self.log_action.triggered.connect(self.open_log)
        self.export_action = menu.addAction(self.tr("E&xport diagnostics…"))
        self.export_action.triggered.connect(self.status_window.export_diagnostics)
        self.notify_menu = menu.addMenu(self.tr("&Notifications"))
        self.notify_group = QActionGroup(self)
        self.notify_actions: dict[NotifyLevel, QAction] = {}
        for level in NOTIFY_LABELS:
            action = self.notify_menu.addAction(notify_label(level))
            action.setCheckable(True)
            action.setData(level.value)
            self.notify_group.addAction(action)
            self.notify_actions[level] = action
        self.notify_group.triggered.connect(self._notify_chosen)
        self._sync_notify_menu()
        menu.addSeparator()
        self.quit_action = menu.addAction(self.tr("&Quit"))
        self.quit_action.triggered.connect(self.quit)

    def _sync_notify_menu(self) -> None:
        self.notify_actions[self.preferences.notify_level].setChecked(True)

    def _notify_chosen(self, action: QAction) -> None:
        self.preferences.notify_level = NotifyLevel(str(action.data()))

    # ---------------------------------------------------------------------------------------- refresh

    def blocked_reason(self) -> str | None:
        return self.status_window.change_blocked_reason()

    def refresh(self) -> None:
        """Bring the icon, tooltip and menu up to date; only what changed is handed on, because each change
        travels to the tray host (StatusNotifierItem, D-Bus menu) and wakes it too."""
        model = self.model
        tray = model.tray_state
        if tray is not self._shown_state:
            self.icon.setIcon(state_icon(tray))
            self.header_action.setIcon(state_icon(tray))
            self._shown_state = tray
        hint = self.start_hint if tray is TrayState.UNAVAILABLE else None
        text = tooltip(model.tooltip_facts(hint))
        if text != self.icon.toolTip():
            self.icon.setToolTip(text)
        self.header_action.setText(self.tr("m6t: {state}").format(state=header_label(tray, model.overall_state)))
        self._show_tunnels(model.tunnel_lines() if model.reachable else ())
        blocked = self.blocked_reason()
        if not model.reachable:
            self.reason_action.setText(f"{model.offline_reason or tray_label(tray)} {self.start_hint}")
        elif model.read_only:
            self.reason_action.setText(blocked or "")
        self.reason_action.setVisible(bool(blocked))
        disconnect = wants_disconnect_action(state=model.state, wanted=model.wanted)
        self.toggle_action.setText(self.tr("&Disconnect") if disconnect else self.tr("&Connect"))
        self.toggle_action.setEnabled(blocked is None)
        self.toggle_action.setToolTip(blocked or "")
        self.copy_action.setEnabled(bool(model.address) and model.reachable)
        self.export_action.setEnabled(model.reachable)

    def _show_tunnels(self, tunnels: tuple[TunnelLine, ...]) -> None:
        if tunnels == self._shown_tunnels:
            return
        while len(self.tunnel_actions) > len(tunnels):
            gone = self.tunnel_actions.pop()
            self.menu.removeAction(gone)
            gone.deleteLater()
        while len(self.tunnel_actions) < len(tunnels):
            action = QAction(self.menu)
            action.setEnabled(False)
            self.menu.insertAction(self._tunnels_end, action)
            self.tunnel_actions.append(action)
        for index, (action, tunnel) in enumerate(zip(self.tunnel_actions, tunnels, strict=True)):
            shown = self._shown_tunnels[index] if index < len(self._shown_tunnels) else None
            if shown != tunnel:
                action.setText(tunnel_line(tunnel))
                action.setIcon(state_icon(tray_state(reachable=True, state=tunnel.state, wanted="up")))
        self._shown_tunnels = tunnels

    def current_icon_state(self) -> TrayState | None:
        """The state whose icon the tray shows, read back from the tray icon itself: what the user sees, not
        what we meant to show (the state icons are cached, so a shown icon keeps its state icon's key)."""
        shown = self.icon.icon().cacheKey()
        return next((state for state in TrayState if state_icon(state).cacheKey() == shown), None)

    # ---------------------------------------------------------------------------------------- actions

    def show(self) -> None:
        self.icon.show()

    def toggle(self) -> None:
        up = not wants_disconnect_action(state=self.model.state, wanted=self.model.wanted)

        def done(outcome: Outcome) -> None:
            # A failure answers the user's own click, so it is shown whatever the notification level.
            if not outcome.ok:
                title = self.tr("m6t: could not connect") if up else self.tr("m6t: could not disconnect")
                self._show(title, outcome.message, error=True)

        self.model.set_wanted(up, done)

    def show_status(self) -> None:
        self.status_window.show()
        self.status_window.raise_()
        self.status_window.activateWindow()

    def show_settings(self) -> None:
        if self.settings_dialog is None:
            self.settings_dialog = SettingsDialog(self.model, self.preferences, self.autostart)
        if not self.settings_dialog.isVisible():
            self.settings_dialog.load()
        self.settings_dialog.show()
        self.settings_dialog.raise_()
        self.settings_dialog.activateWindow()

    def copy_address(self) -> None:
        if self.model.address:
            QGuiApplication.clipboard().setText(self.model.address)

    def open_log(self) -> None:
        self.status_window.show_tab(TAB_LOG)

    def quit(self) -> None:
        self.icon.hide()
        self.model.connection.stop()
        QApplication.quit()

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (QSystemTrayIcon.ActivationReason.Trigger, QSystemTrayIcon.ActivationReason.DoubleClick):
            self.show_status()

    # ---------------------------------------------------------------------------------------- notifications

    def _show(self, title: str, text: str, *, error: bool) -> None:
        kind = QSystemTrayIcon.MessageIcon.Warning if error else QSystemTrayIcon.MessageIcon.Information
        if self.icon.isVisible() and QSystemTrayIcon.supportsMessages():
            self.icon.showMessage(title, text, kind, MESSAGE_MS)
        self.notified.emit(title, text)

    def notify(self, title: str, text: str, *, error: bool = False) -> None:
        if self.preferences.allows(error=error):
            self._show(title, text, error=error)

    def _on_connected(self) -> None:
        if time.monotonic() - self._last_regeneration_notice < QUIET_AFTER_REGENERATION_S:
            return
        gateway = schema.gateway_label(self.model.status) if self.model.status else None
        address = self.model.address or self.tr("pending")
        text = (
            self.tr("Tunnel address {address} via {gateway}.").format(address=address, gateway=gateway)
            if gateway
            else self.tr("Tunnel address {address}.").format(address=address)
        )
        self.notify(self.tr("m6t connected"), text)

    def _on_regenerated(self, regeneration: dict[str, Any]) -> None:
        self._last_regeneration_notice = time.monotonic()
        reason = reason_label(str(regeneration.get("reason") or ""))
        self.notify(self.tr("m6t: new tunnel address"), f"{regeneration.get('new')}: {reason}.")

    def _on_error(self, error: dict[str, Any]) -> None:
        code = int(error.get("code", 0))
        now = time.monotonic()
        if now - self._recent_errors.get(code, -REPEAT_ERROR_S) < REPEAT_ERROR_S:
            return
        self._recent_errors[code] = now
        info = cast(schema.ErrorInfo, error)
        if not info.get("message"):
            info = {**schema.error_info(ErrorCode.TUNNEL_ERROR), "hint": error.get("hint")}
        self.notify(self.tr("m6t error"), error_text(info), error=True)

    def _on_reachability(self, reachable: bool) -> None:
        if not reachable:
            why = self.model.offline_reason or ""
            self.notify(self.tr("m6t helper not reachable"), f"{why} {self.start_hint}".strip(), error=True)
