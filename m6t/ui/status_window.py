"""The status and diagnostics window: everything the helper knows about the tunnel, live."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, Final, cast

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent, QFontDatabase, QGuiApplication, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMainWindow,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from m6t.client.api import schema
from m6t.client.api.schema import Method
from m6t.ui import dialogs
from m6t.ui.charts import LiveChart
from m6t.ui.connection import Outcome
from m6t.ui.icons import app_icon, state_icon
from m6t.ui.model import CONNECT, TunnelModel, is_drop_counter
from m6t.ui.state import (
    TRAY_LABELS,
    format_clock,
    format_duration,
    reason_label,
    tunnel_label,
    wants_disconnect_action,
)
from m6t.ui.widgets import ERROR_STYLE, banner_label

LOG_LIMIT: Final = 500
DASH: Final = "\u2013"

TAB_STATUS: Final = "status"
TAB_COUNTERS: Final = "counters"
TAB_HISTORY: Final = "history"
TAB_LOG: Final = "log"


def _ago(then: float | None, now: float) -> str:
    if then is None:
        return DASH
    return f"{format_clock(then)} ({format_duration(now - then)} ago)"


def _table(headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setAlternatingRowColors(True)
    header = table.horizontalHeader()
    for column in range(len(headers) - 1):
        header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
    header.setStretchLastSection(True)
    return table


def search_text(search: schema.MtuSearchInfo | None) -> str:
    """What path MTU discovery found, how and when (RFC 8899 on the tunnel; ``None``: it is off)."""
    if search is None:
        return "off"
    if search["fragmentation"]:
        return "path under 1308 bytes: 1280 kept, larger packets rely on fragmentation"
    if search["state"] in ("base", "searching"):
        return "searching\u2026"
    if search["mtu"] is None:
        return "not yet (waits for the tunnel)"
    when = f" at {format_clock(search['time'])}" if search["time"] is not None else ""
    probes = search["probes"]
    return f"{search['mtu']} bytes{when} ({search['found']}, {probes} probe{'s' if probes != 1 else ''})"


def _fill(table: QTableWidget, rows: list[tuple[str, ...]], numeric_columns: tuple[int, ...] = ()) -> None:
    table.setRowCount(len(rows))
    for row, values in enumerate(rows):
        for column, value in enumerate(values):
            item = QTableWidgetItem(value)
            if column in numeric_columns:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            table.setItem(row, column, item)


class StatusWindow(QMainWindow):
    def __init__(self, model: TunnelModel, start_hint: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.start_hint = start_hint
        self.setWindowTitle("m6t status")
        self.setWindowIcon(app_icon())
        self.resize(960, 640)
        self._fields: dict[str, QLabel] = {}
        self._probe_text = DASH

        central = QWidget()
        outer = QVBoxLayout(central)
        outer.addLayout(self._build_header())
        self.banner = banner_label()
        outer.addWidget(self.banner)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addWidget(self.message)
        self.tabs = QTabWidget()
        self.tabs.addTab(self._build_status_tab(), "Status")
        self.tabs.addTab(self._build_counters_tab(), "Counters")
        self.tabs.addTab(self._build_history_tab(), "Address history")
        self.tabs.addTab(self._build_log_tab(), "Log")
        self._tab_index = {TAB_STATUS: 0, TAB_COUNTERS: 1, TAB_HISTORY: 2, TAB_LOG: 3}
        outer.addWidget(self.tabs, 1)
        self.footer = QLabel()
        self.footer.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addWidget(self.footer)
        self.setCentralWidget(central)

        self._ticker = QTimer(self)
        self._ticker.setInterval(1000)
        self._ticker.timeout.connect(self.refresh)
        model.changed.connect(self._model_changed)
        self.refresh()

    # ---------------------------------------------------------------------------------------- building

    def _build_header(self) -> QHBoxLayout:
        header = QHBoxLayout()
        self.state_icon = QLabel()
        self.state_icon.setFixedSize(48, 48)
        header.addWidget(self.state_icon)
        titles = QVBoxLayout()
        self.state_label = QLabel()
        font = self.state_label.font()
        font.setPointSizeF(font.pointSizeF() * 1.4)
        font.setBold(True)
        self.state_label.setFont(font)
        self.state_detail = QLabel()
        self.state_detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        titles.addWidget(self.state_label)
        titles.addWidget(self.state_detail)
        header.addLayout(titles, 1)
        self.toggle_button = QPushButton("Connect")
        self.toggle_button.clicked.connect(self.toggle)
        self.probe_button = QPushButton("MTU probe")
        self.probe_button.clicked.connect(self.probe_mtu)
        self.export_button = QPushButton("Export diagnostics\u2026")
        self.export_button.clicked.connect(self.export_diagnostics)
        for button in (self.toggle_button, self.probe_button, self.export_button):
            header.addWidget(button)
        return header

    def _form(self, title: str, rows: list[tuple[str, str]]) -> QGroupBox:
        box = QGroupBox(title)
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for key, label in rows:
            value = QLabel(DASH)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setObjectName(key)
            self._fields[key] = value
            form.addRow(label, value)
        return box

    def _build_status_tab(self) -> QWidget:
        page = QWidget()
        grid = QGridLayout(page)
        left = QVBoxLayout()
        left.addWidget(
            self._form("Attachment", [("egress", "Egress IPv4:"), ("egress_if", "Interface:"), ("router", "Router:")])
        )
        left.addWidget(
            self._form(
                "Tunnel",
                [
                    ("gateway", "Gateway:"),
                    ("address", "Tunnel address:"),
                    ("generated", "Generated:"),
                    ("interface", "Interface:"),
                ],
            )
        )
        left.addWidget(
            self._form(
                "MTU",
                [
                    ("mtu_configured", "Configured:"),
                    ("mtu_effective", "Effective:"),
                    ("mtu_search", "Path search:"),
                    ("mtu_evidence", "Last evidence:"),
                    ("mtu_probe", "Last probe:"),
                ],
            )
        )
        left.addWidget(
            self._form(
                "Keepalive",
                [
                    ("ka_interval", "Interval:"),
                    ("ka_sent", "Last sent:"),
                    ("ka_reply", "Last reply:"),
                    ("ka_rtt", "Round trip:"),
                    ("ka_missed", "Missed:"),
                ],
            )
        )
        left.addStretch(1)
        grid.addLayout(left, 0, 0)
        charts = QVBoxLayout()
        self.rtt_chart = LiveChart("Keepalive round trip", "RTT", "s", [("RTT", "#2563eb")])
        self.rate_chart = LiveChart("Throughput", "rate", "bit/s", [("received", "#16a34a"), ("sent", "#d97706")])
        charts.addWidget(self.rtt_chart, 1)
        charts.addWidget(self.rate_chart, 1)
        grid.addLayout(charts, 0, 1)
        grid.setColumnStretch(0, 2)
        grid.setColumnStretch(1, 3)
        return page

    def _build_counters_tab(self) -> QWidget:
        page = QWidget()
        row = QHBoxLayout(page)
        self.counters_table = _table(["Counter", "Value"])
        self.drops_table = _table(["Drop reason", "Packets"])
        for title, table in (("Counters", self.counters_table), ("Drops by reason", self.drops_table)):
            box = QGroupBox(title)
            QVBoxLayout(box).addWidget(table)
            row.addWidget(box)
        return page

    def _build_history_tab(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        self.regen_count = QLabel()
        layout.addWidget(self.regen_count)
        self.history_table = _table(["Time", "Reason", "Previous address", "New address"])
        layout.addWidget(self.history_table)
        return page

    def _build_log_tab(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.log_view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        layout.addWidget(self.log_view)
        buttons = QHBoxLayout()
        self.log_refresh_button = QPushButton("Refresh")
        self.log_refresh_button.clicked.connect(self.load_log)
        self.log_copy_button = QPushButton("Copy")
        self.log_copy_button.clicked.connect(self.copy_log)
        self.log_save_button = QPushButton("Save\u2026")
        self.log_save_button.clicked.connect(self.save_log)
        buttons.addStretch(1)
        for button in (self.log_refresh_button, self.log_copy_button, self.log_save_button):
            buttons.addWidget(button)
        layout.addLayout(buttons)
        return page

    # ---------------------------------------------------------------------------------------- showing

    def show_tab(self, name: str) -> None:
        self.tabs.setCurrentIndex(self._tab_index[name])
        if name == TAB_LOG:
            self.load_log()
        self.show()
        self.raise_()
        self.activateWindow()

    def showEvent(self, event: QShowEvent) -> None:
        self._ticker.start()
        self.refresh()
        super().showEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        # The tray keeps running: closing the window only hides it.
        self._ticker.stop()
        super().closeEvent(event)

    def field(self, key: str) -> str:
        return self._fields[key].text()

    def set_message(self, text: str, *, error: bool = False) -> None:
        self.message.setStyleSheet(ERROR_STYLE if error else "")
        self.message.setText(text)

    def _model_changed(self) -> None:
        # Counters arrive every few seconds: a hidden window catches up when shown (showEvent), not on each.
        if self.isVisible():
            self.refresh()

    def refresh(self) -> None:
        model = self.model
        now = time.time()
        tray = model.tray_state
        self.state_icon.setPixmap(state_icon(tray).pixmap(48, 48))
        status = model.status
        reachable = model.reachable and status is not None
        self.state_label.setText(tunnel_label(model.state) if reachable else TRAY_LABELS[tray])
        if not reachable:
            self.state_detail.setText(model.offline_reason or "Connecting to the helper\u2026")
        else:
            since = model.connected_since
            parts = [model.address or "", "" if since is None else f"connected for {format_duration(now - since)}"]
            self.state_detail.setText(" \u00b7 ".join(part for part in parts if part))
        self._refresh_controls()
        if status is not None:
            self._refresh_fields(status, now)
        self.footer.setText(self._footer_text(status) if reachable and status is not None else "")
        self._refresh_charts(now)

    def _refresh_controls(self) -> None:
        model = self.model
        disconnect = wants_disconnect_action(state=model.state, wanted=model.wanted)
        self.toggle_button.setText("Disconnect" if disconnect else "Connect")
        blocked = self.change_blocked_reason()
        for button in (self.toggle_button, self.probe_button):
            button.setEnabled(blocked is None)
            button.setToolTip(blocked or "")
        self.export_button.setEnabled(model.reachable)
        self.log_refresh_button.setEnabled(model.reachable)
        banner = blocked
        if not model.reachable:
            why = model.offline_reason or "The m6t helper is not reachable."
            banner = f"{why} {self.start_hint}. Retrying in the background."
        status = model.status if model.reachable else None
        problems = [problem["message"] for problem in status.get("problems", [])] if status else []
        text = " ".join([*([banner] if banner else []), *problems])
        self.banner.setText(text)
        self.banner.setVisible(bool(text))

    def _footer_text(self, status: schema.Status) -> str:
        parts = [self.model.server or "m6t-helper"]
        helper = status.get("helper")
        if helper:
            parts += [f"pid {helper['pid']}", f"up {format_duration(helper['uptime_s'])}", helper["config_path"]]
        parts.append("operator access" if not self.model.read_only else "read-only access")
        return " \u00b7 ".join(parts)

    def change_blocked_reason(self) -> str | None:
        """Why change controls are disabled right now, or ``None`` when they are enabled."""
        if not self.model.reachable:
            return self.model.offline_reason or "The m6t helper is not reachable."
        return self.model.refusal(CONNECT)

    def _refresh_fields(self, status: schema.Status, now: float) -> None:
        model = self.model
        set_text = {key: label.setText for key, label in self._fields.items()}
        attachment = status.get("attachment")
        set_text["egress"](attachment["local_ipv4"] if attachment else "none (no IPv4 path toward the gateway)")
        set_text["egress_if"](attachment["interface"] if attachment else DASH)
        set_text["router"]((attachment.get("router") or DASH) if attachment else DASH)
        configured = model.config_value("gateway.address")
        if isinstance(configured, list):
            configured = ", ".join(map(str, configured))
        set_text["gateway"](schema.gateway_label(status) or str(configured or DASH))
        set_text["address"](status.get("address") or DASH)
        set_text["interface"](status.get("interface") or DASH)
        latest = next((r for r in reversed(model.regenerations()) if r.get("new") == status.get("address")), None)
        set_text["generated"](
            DASH if latest is None else f"{_ago(latest['time'], now)}, {reason_label(latest.get('reason'))}"
        )

        detail = status.get("mtu_detail") or None
        configured = detail["configured"] if detail else None
        if configured is None and model.last_mtu and model.last_mtu.configured:
            configured = model.last_mtu.configured
        configured = configured or model.config_value("tunnel.mtu")
        set_text["mtu_configured"](DASH if configured is None else f"{configured} bytes")
        effective = status.get("mtu")
        set_text["mtu_effective"](DASH if effective is None else f"{effective} bytes")
        set_text["mtu_search"](search_text(detail.get("search") if detail else None))
        evidence = model.last_mtu
        helper_evidence = detail["last_evidence"] if detail else None
        if helper_evidence is not None and (evidence is None or (helper_evidence["time"] or 0) >= evidence.time):
            when = helper_evidence["time"]
            at = f" at {format_clock(when)}" if when is not None else ""
            set_text["mtu_evidence"](f"path MTU {helper_evidence['path_mtu']} bytes{at} ({helper_evidence['source']})")
        elif evidence is None:
            set_text["mtu_evidence"]("none" if detail else "none since the tray started")
        else:
            path = f", path MTU {evidence.path_mtu}" if evidence.path_mtu else ""
            why = evidence.reason or "unknown"
            set_text["mtu_evidence"](f"{evidence.mtu} bytes at {format_clock(evidence.time)} ({why}{path})")
        set_text["mtu_probe"](self._probe_text)

        keepalive = status.get("keepalive") or {}
        # Keys beyond the schema's KeepaliveInfo are shown when a helper sends them (shapes only grow).
        extra = cast(Mapping[str, Any], keepalive)
        interval = keepalive.get("interval_s") or model.config_value("tunnel.keepalive_interval")
        set_text["ka_interval"](DASH if interval is None else f"{interval:g} s")
        last_sent = extra.get("last_sent")
        set_text["ka_sent"](_ago(float(last_sent), now) if isinstance(last_sent, int | float) else DASH)
        set_text["ka_reply"](_ago(model.keepalive_reply_at, now))
        rtt = keepalive.get("rtt_ms")
        set_text["ka_rtt"](DASH if rtt is None else f"{rtt:.1f} ms")
        missed = extra.get("missed")
        set_text["ka_missed"](str(missed) if isinstance(missed, int) else DASH)

        counters = model.counters()
        _fill(
            self.counters_table, [(name, f"{value:,}") for name, value in counters if not is_drop_counter(name)], (1,)
        )
        _fill(self.drops_table, [(name, f"{value:,}") for name, value in counters if is_drop_counter(name)], (1,))
        regenerations = model.regenerations()
        self.regen_count.setText(f"{len(regenerations)} new address(es) drawn, newest first.")
        _fill(
            self.history_table,
            [
                (format_clock(r["time"]), reason_label(r.get("reason")), r.get("old") or DASH, r.get("new") or DASH)
                for r in reversed(regenerations)
            ],
        )

    def _refresh_charts(self, now: float) -> None:
        rtt = list(self.model.rtt)
        self.rtt_chart.set_series(0, [s.time - now for s in rtt], [s.rtt_ms / 1000 for s in rtt])
        rates = list(self.model.rates)
        ages = [s.time - now for s in rates]
        self.rate_chart.set_series(0, ages, [s.rx_bps for s in rates])
        self.rate_chart.set_series(1, ages, [s.tx_bps for s in rates])

    # ---------------------------------------------------------------------------------------- actions

    def toggle(self) -> None:
        up = not wants_disconnect_action(state=self.model.state, wanted=self.model.wanted)

        def done(outcome: Outcome) -> None:
            if not outcome.ok:
                self.set_message(outcome.message, error=True)

        self.set_message("")
        self.model.set_wanted(up, done)

    def probe_mtu(self) -> None:
        self._probe_text = "probing\u2026"
        self.probe_button.setEnabled(False)
        self.refresh()

        def done(outcome: Outcome) -> None:
            if outcome.ok and isinstance(outcome.result, dict):
                result = cast(schema.MtuProbeResult, outcome.result)
                previous = result.get("previous")
                was = f" (was {previous})" if previous is not None and previous != result["mtu"] else ""
                self._probe_text = f"{result['mtu']} bytes{was} at {format_clock(time.time())}"
                self.set_message(f"MTU probe: the path carries {result['mtu']}-byte IPv6 packets{was}.")
            else:
                self._probe_text = f"failed: {outcome.message}"
                self.set_message(f"MTU probe failed: {outcome.message}", error=True)
            self.refresh()

        self.model.call(Method.MTU_PROBE, None, done)

    def export_diagnostics(self) -> None:
        self.show()
        self.raise_()
        name = time.strftime("m6t-diagnostics-%Y%m%d-%H%M%S.json")
        path = dialogs.ask_save_path(self, "Export diagnostics", name, "JSON (*.json);;All files (*)")
        if path is None:
            return

        def done(outcome: Outcome) -> None:
            if not outcome.ok or not isinstance(outcome.result, dict):
                self.set_message(f"Diagnostics failed: {outcome.message}", error=True)
                return
            bundle = cast(schema.DiagnosticsResult, outcome.result).get("bundle", {})
            try:
                path.write_text(json.dumps(bundle, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            except OSError as exc:
                self.set_message(f"Could not write {path}: {exc.strerror or exc}", error=True)
                return
            self.set_message(f"Diagnostics saved to {path}.")

        self.set_message("Collecting diagnostics\u2026")
        self.model.call(Method.DIAGNOSTICS, None, done)

    def load_log(self) -> None:
        def done(outcome: Outcome) -> None:
            if not outcome.ok or not isinstance(outcome.result, dict):
                self.log_view.setPlainText(f"The log could not be read: {outcome.message}")
                return
            result = cast(schema.LogResult, outcome.result)
            lines = [
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(entry['time']))} "
                f"{entry.get('level', '').upper():7} {entry.get('message', '')}"
                for entry in result.get("entries", [])
            ]
            if result.get("dropped"):
                lines.insert(0, f"({result['dropped']} older entries fell out of the helper's log)")
            self.log_view.setPlainText("\n".join(lines))
            self.log_view.verticalScrollBar().setValue(self.log_view.verticalScrollBar().maximum())

        self.model.call(Method.LOG, {"limit": LOG_LIMIT}, done)

    def copy_log(self) -> None:
        QGuiApplication.clipboard().setText(self.log_view.toPlainText())
        self.set_message("Log copied to the clipboard.")

    def save_log(self) -> None:
        path = dialogs.ask_save_path(
            self, "Save log", time.strftime("m6t-log-%Y%m%d-%H%M%S.txt"), "Text (*.txt);;All files (*)"
        )
        if path is None:
            return
        try:
            path.write_text(self.log_view.toPlainText() + "\n", encoding="utf-8")
        except OSError as exc:
            self.set_message(f"Could not write {path}: {exc.strerror or exc}", error=True)
            return
        self.set_message(f"Log saved to {path}.")
