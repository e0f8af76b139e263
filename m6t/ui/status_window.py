"""The status and diagnostics window: everything the helper knows about the tunnel, live."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, cast

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent, QFontDatabase, QGuiApplication, QHideEvent, QShowEvent
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
from m6t.client.api.schema import Method, TunnelState
from m6t.ui import dialogs
from m6t.ui.charts import LiveChart
from m6t.ui.connection import Outcome
from m6t.ui.errors import error_message
from m6t.ui.i18n import translate
from m6t.ui.icons import app_icon, state_icon
from m6t.ui.model import CONNECT, RateSample, RttSample, TunnelModel, is_drop_counter
from m6t.ui.state import (
    format_bits_per_second,
    format_clock,
    format_duration,
    format_minutes,
    reason_label,
    tray_label,
    tunnel_label,
    tunnels_connected,
    uplink_of,
    wants_disconnect_action,
)
from m6t.ui.widgets import ERROR_STYLE, banner_label, describe

LOG_LIMIT: Final = 500
TICK_MS: Final = 1000
"""While the window is shown: how often the clock is looked at (texts "4 min ago", the charts' time axis);
what it did not change visibly is left alone."""
DASH: Final = "\u2013"

TAB_STATUS: Final = "status"
TAB_TUNNELS: Final = "tunnels"
TAB_COUNTERS: Final = "counters"
TAB_HISTORY: Final = "history"
TAB_LOG: Final = "log"


def _ago(then: float | None, now: float) -> str:
    if then is None:
        return DASH
    # To the minute: a count of seconds would change the text, and re-lay out the window, every second.
    return translate("StatusWindow", "{clock} ({duration} ago)").format(
        clock=format_clock(then), duration=format_minutes(now - then)
    )


def _table(headers: list[str], name: str, description: str) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    describe(table, name, description)
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setAlternatingRowColors(True)
    # Tab leaves the table (the arrows move in it): a read-only table must not trap the keyboard.
    table.setTabKeyNavigation(False)
    header = table.horizontalHeader()
    for column in range(len(headers) - 1):
        header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
    header.setStretchLastSection(True)
    return table


def search_text(search: schema.MtuSearchInfo | None) -> str:
    """What path MTU discovery found, how and when (RFC 8899 on the tunnel; ``None``: it is off)."""
    if search is None:
        return translate("StatusWindow", "off")
    if search["fragmentation"]:
        return translate("StatusWindow", "path under 1308 bytes: 1280 kept, larger packets rely on fragmentation")
    if search["state"] in ("base", "searching"):
        return translate("StatusWindow", "searching…")
    if search["mtu"] is None:
        return translate("StatusWindow", "not yet (waits for the tunnel)")
    count = search["probes"]
    found = (
        translate("StatusWindow", "1 probe")
        if count == 1
        else translate("StatusWindow", "{count} probes").format(count=count)
    )
    if search["time"] is None:
        return translate("StatusWindow", "{mtu} bytes ({found}, {probes})").format(
            mtu=search["mtu"], found=search["found"], probes=found
        )
    return translate("StatusWindow", "{mtu} bytes at {clock} ({found}, {probes})").format(
        mtu=search["mtu"], clock=format_clock(search["time"]), found=search["found"], probes=found
    )


Rows = list[tuple[str, ...]]


def _fill(table: QTableWidget, rows: Rows, numeric_columns: tuple[int, ...] = (), tips: Rows | None = None) -> None:
    table.setRowCount(len(rows))
    for row, values in enumerate(rows):
        for column, value in enumerate(values):
            item = QTableWidgetItem(value)
            if column in numeric_columns:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if tips is not None and tips[row][column]:
                item.setToolTip(tips[row][column])
            table.setItem(row, column, item)


def uplink_text(tunnel: schema.TunnelSummary) -> str:
    """The IPv4 interface a tunnel leaves by, with its address there."""
    name, attachment = uplink_of(tunnel), tunnel.get("attachment")
    if name is None:
        return DASH
    return f"{name} ({attachment['local_ipv4']})" if attachment else name


class StatusWindow(QMainWindow):
    """Redrawn when the model changes (a sample or a state arrived) and, while shown, when the clock changed
    something visibly: a text counting minutes ("4 min ago"), the charts' time axis moved by two pixels;
    whatever did not change is not touched, so an idle tunnel costs a chart redraw every second or two
    (bench/tray_idle.py counts them)."""

    def __init__(self, model: TunnelModel, start_hint: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.start_hint = start_hint
        self.setWindowTitle(self.tr("m6t status"))
        self.setWindowIcon(app_icon())
        self.resize(960, 640)
        self._fields: dict[str, QLabel] = {}
        self._probe_text = DASH
        self._shown_state: object = None
        self._table_rows: dict[int, tuple[Rows, Rows | None]] = {}
        self._charts_at: float | None = None
        self._charted: tuple[object, ...] = ()

        central = QWidget()
        outer = QVBoxLayout(central)
        outer.addLayout(self._build_header())
        self.banner = banner_label()
        describe(self.banner, self.tr("Notice"), self.tr("Why some controls are unavailable"))
        outer.addWidget(self.banner)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        describe(self.message, self.tr("Result"), self.tr("The outcome of the last action"))
        outer.addWidget(self.message)
        self.tabs = QTabWidget()
        self.tabs.addTab(self._build_status_tab(), self.tr("&Status"))
        self.tabs.addTab(self._build_tunnels_tab(), self.tr("&Tunnels"))
        self.tabs.addTab(self._build_counters_tab(), self.tr("C&ounters"))
        self.tabs.addTab(self._build_history_tab(), self.tr("Address &history"))
        self.tabs.addTab(self._build_log_tab(), self.tr("&Log"))
        describe(self.tabs, self.tr("Views"), self.tr("Status, tunnels, counters, address history and log"))
        describe(self.tabs.tabBar(), self.tr("Views"), self.tr("Choose what the window shows (Ctrl+Tab)"))
        self._tab_index = {TAB_STATUS: 0, TAB_TUNNELS: 1, TAB_COUNTERS: 2, TAB_HISTORY: 3, TAB_LOG: 4}
        outer.addWidget(self.tabs, 1)
        self.footer = QLabel()
        self.footer.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        describe(self.footer, self.tr("Helper"), self.tr("The helper this window talks to"))
        outer.addWidget(self.footer)
        self.setCentralWidget(central)

        self._ticker = QTimer(self)
        self._ticker.setInterval(TICK_MS)
        self._ticker.timeout.connect(self._tick)
        model.changed.connect(self._model_changed)
        self.refresh()

    # ---------------------------------------------------------------------------------------- building

    def _build_header(self) -> QHBoxLayout:
        header = QHBoxLayout()
        self.state_icon = QLabel()
        self.state_icon.setFixedSize(48, 48)
        describe(self.state_icon, self.tr("State icon"), self.tr("The tray icon of the tunnel's state"))
        header.addWidget(self.state_icon)
        titles = QVBoxLayout()
        self.state_label = QLabel()
        font = self.state_label.font()
        font.setPointSizeF(font.pointSizeF() * 1.4)
        font.setBold(True)
        self.state_label.setFont(font)
        describe(self.state_label, self.tr("Tunnel state"), self.tr("What the tunnel is doing"))
        self.state_detail = QLabel()
        self.state_detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        describe(self.state_detail, self.tr("Tunnel address"), self.tr("The tunnel address and time connected"))
        titles.addWidget(self.state_label)
        titles.addWidget(self.state_detail)
        header.addLayout(titles, 1)
        self.toggle_button = QPushButton(self.tr("&Connect"))
        self.toggle_button.clicked.connect(self.toggle)
        describe(self.toggle_button, self.tr("Connect or disconnect"), self.tr("Bring the tunnel up or down"))
        self.probe_button = QPushButton(self.tr("&MTU probe"))
        self.probe_button.clicked.connect(self.probe_mtu)
        describe(
            self.probe_button,
            self.tr("MTU probe"),
            self.tr("Measure the largest packet the tunnel carries now"),
        )
        self.export_button = QPushButton(self.tr("E&xport diagnostics…"))
        self.export_button.clicked.connect(self.export_diagnostics)
        describe(
            self.export_button,
            self.tr("Export diagnostics"),
            self.tr("Save everything the helper knows to a file, for a bug report"),
        )
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
            describe(value, label.rstrip(" :"), title)
            self._fields[key] = value
            form.addRow(label, value)
        return box

    def _build_tunnels_tab(self) -> QWidget:
        # A page of its own rather than a table on the status page: that page already fills a laptop's screen,
        # and with one tunnel (the default) it shows the tunnel as it always did.
        page = QWidget()
        layout = QVBoxLayout(page)
        self.tunnels_table = _table(
            [
                self.tr("Interface"),
                self.tr("Uplink"),
                self.tr("State"),
                self.tr("Address"),
                self.tr("RTT"),
                self.tr("MTU"),
                self.tr("Gateway"),
            ],
            self.tr("Tunnels"),
            self.tr("Every tunnel, one per IPv4 uplink when the helper uses them all, the primary marked"),
        )
        layout.addWidget(self.tunnels_table, 1)
        self.tunnels_note = QLabel()
        self.tunnels_note.setWordWrap(True)
        describe(self.tunnels_note, self.tr("Primary tunnel"), self.tr("Which tunnel the status page describes"))
        self.tunnels_note.hide()
        layout.addWidget(self.tunnels_note)
        return page

    def _build_status_tab(self) -> QWidget:
        page = QWidget()
        grid = QGridLayout(page)
        left = QVBoxLayout()
        left.addWidget(
            self._form(
                self.tr("Attachment"),
                [
                    ("egress", self.tr("Egress IPv4:")),
                    ("egress_if", self.tr("Interface:")),
                    ("router", self.tr("Router:")),
                ],
            )
        )
        left.addWidget(
            self._form(
                self.tr("Tunnel"),
                [
                    ("gateway", self.tr("Gateway:")),
                    ("address", self.tr("Tunnel address:")),
                    ("generated", self.tr("Generated:")),
                    ("interface", self.tr("Interface:")),
                ],
            )
        )
        left.addWidget(
            self._form(
                self.tr("MTU"),
                [
                    ("mtu_configured", self.tr("Configured:")),
                    ("mtu_effective", self.tr("Effective:")),
                    ("mtu_search", self.tr("Path search:")),
                    ("mtu_evidence", self.tr("Last evidence:")),
                    ("mtu_probe", self.tr("Last probe:")),
                ],
            )
        )
        left.addWidget(
            self._form(
                self.tr("Keepalive"),
                [
                    ("ka_interval", self.tr("Interval:")),
                    ("ka_sent", self.tr("Last sent:")),
                    ("ka_reply", self.tr("Last reply:")),
                    ("ka_rtt", self.tr("Round trip:")),
                    ("ka_missed", self.tr("Missed:")),
                ],
            )
        )
        left.addStretch(1)
        grid.addLayout(left, 0, 0)
        charts = QVBoxLayout()
        self.rtt_chart = LiveChart(
            self.tr("Keepalive round trip"), self.tr("RTT"), "s", [(self.tr("RTT"), "#2563eb")], self.tr("seconds ago")
        )
        self.rate_chart = LiveChart(
            self.tr("Throughput"),
            self.tr("rate"),
            "bit/s",
            [(self.tr("received"), "#16a34a"), (self.tr("sent"), "#d97706")],
            self.tr("seconds ago"),
        )
        self.rtt_summary = QLabel()
        self.rate_summary = QLabel()
        for chart, summary, name in (
            (self.rtt_chart, self.rtt_summary, self.tr("Keepalive round trip")),
            (self.rate_chart, self.rate_summary, self.tr("Throughput")),
        ):
            # The numbers beside the picture: what a screen reader reads, and what a glance needs.
            summary.setWordWrap(True)
            summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            describe(summary, self.tr("{chart}, in numbers").format(chart=name), self.tr("Over the last 5 minutes"))
            charts.addWidget(chart, 1)
            charts.addWidget(summary)
        grid.addLayout(charts, 0, 1)
        grid.setColumnStretch(0, 2)
        grid.setColumnStretch(1, 3)
        return page

    def _build_counters_tab(self) -> QWidget:
        page = QWidget()
        row = QHBoxLayout(page)
        self.counters_table = _table(
            [self.tr("Counter"), self.tr("Value")],
            self.tr("Counters"),
            self.tr("The tunnel's counters since it started"),
        )
        self.drops_table = _table(
            [self.tr("Drop reason"), self.tr("Packets")],
            self.tr("Drops by reason"),
            self.tr("Packets dropped, by why they were dropped"),
        )
        for table in (self.counters_table, self.drops_table):
            box = QGroupBox(table.accessibleName())
            QVBoxLayout(box).addWidget(table)
            row.addWidget(box)
        return page

    def _build_history_tab(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        self.regen_count = QLabel()
        describe(self.regen_count, self.tr("Addresses drawn"), self.tr("How many tunnel addresses were drawn"))
        layout.addWidget(self.regen_count)
        self.history_table = _table(
            [self.tr("Time"), self.tr("Reason"), self.tr("Previous address"), self.tr("New address")],
            self.tr("Address history"),
            self.tr("Every new tunnel address, newest first, with why it was drawn"),
        )
        layout.addWidget(self.history_table)
        return page

    def _build_log_tab(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.log_view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        # Tab moves on to the buttons instead of being typed into a read-only text.
        self.log_view.setTabChangesFocus(True)
        describe(self.log_view, self.tr("Helper log"), self.tr("The helper's recent log, oldest first"))
        layout.addWidget(self.log_view)
        buttons = QHBoxLayout()
        self.log_refresh_button = QPushButton(self.tr("&Refresh"))
        self.log_refresh_button.clicked.connect(self.load_log)
        describe(self.log_refresh_button, self.tr("Refresh log"), self.tr("Read the helper's log again"))
        self.log_copy_button = QPushButton(self.tr("Cop&y"))
        self.log_copy_button.clicked.connect(self.copy_log)
        describe(self.log_copy_button, self.tr("Copy log"), self.tr("Copy the log to the clipboard"))
        self.log_save_button = QPushButton(self.tr("Sa&ve…"))
        self.log_save_button.clicked.connect(self.save_log)
        describe(self.log_save_button, self.tr("Save log"), self.tr("Save the log to a file"))
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

    def hideEvent(self, event: QHideEvent) -> None:
        # Closed (the tray keeps running: closing only hides) or minimised: nothing to keep current.
        self._ticker.stop()
        super().hideEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        self._ticker.stop()
        super().closeEvent(event)

    def field(self, key: str) -> str:
        return self._fields[key].text()

    def set_message(self, text: str, *, error: bool = False) -> None:
        style = ERROR_STYLE if error else ""
        if self.message.styleSheet() != style:
            self.message.setStyleSheet(style)
        self.message.setText(text)

    def _model_changed(self) -> None:
        # Counters arrive every few seconds: a hidden window catches up when shown (showEvent), not on each.
        if self.isVisible():
            self.refresh()

    def _tick(self) -> None:
        """The clock moved: the texts that count time follow it (labels repaint only if their text changed),
        and the charts' time axis once the newest point would have moved visibly."""
        self.refresh(charts=False)
        now = time.time()
        step = max(self.rtt_chart.redraw_step_s(), self.rate_chart.redraw_step_s())
        if self._charts_at is None or now - self._charts_at >= step:
            self._refresh_charts(now)

    def refresh(self, *, charts: bool = True) -> None:
        model = self.model
        now = time.time()
        tray = model.tray_state
        if tray is not self._shown_state:
            self.state_icon.setPixmap(state_icon(tray).pixmap(48, 48))
            self._shown_state = tray
        status = model.status
        reachable = model.reachable and status is not None
        self.state_label.setText(tunnel_label(model.overall_state) if reachable else tray_label(tray))
        if not reachable:
            self.state_detail.setText(model.offline_reason or self.tr("Connecting to the helper…"))
        else:
            since = model.connected_since
            connected = (
                ""
                if since is None
                else self.tr("connected for {duration}").format(duration=format_minutes(now - since))
            )
            tunnels = model.tunnels
            count = (
                tunnels_connected(sum(t["state"] == TunnelState.CONNECTED for t in tunnels), len(tunnels))
                if len(tunnels) > 1
                else ""
            )
            self.state_detail.setText(" \u00b7 ".join(part for part in (model.address or "", connected, count) if part))
        self._refresh_controls()
        if status is not None:
            self._refresh_fields(status, now)
        self.footer.setText(self._footer_text(status) if reachable and status is not None else "")
        if charts:
            self._refresh_charts(now)

    def _refresh_controls(self) -> None:
        model = self.model
        disconnect = wants_disconnect_action(state=model.state, wanted=model.wanted)
        self.toggle_button.setText(self.tr("&Disconnect") if disconnect else self.tr("&Connect"))
        blocked = self.change_blocked_reason()
        for button in (self.toggle_button, self.probe_button):
            button.setEnabled(blocked is None)
            button.setToolTip(blocked or "")
        self.export_button.setEnabled(model.reachable)
        self.log_refresh_button.setEnabled(model.reachable)
        banner = blocked
        if not model.reachable:
            why = model.offline_reason or self.tr("The m6t helper is not reachable.")
            banner = self.tr("{why} {hint}. Retrying in the background.").format(why=why, hint=self.start_hint)
        status = model.status if model.reachable else None
        problems = [error_message(problem) for problem in status.get("problems", [])] if status else []
        text = " ".join([*([banner] if banner else []), *problems])
        self.banner.setText(text)
        self.banner.setVisible(bool(text))

    def _footer_text(self, status: schema.Status) -> str:
        parts = [self.model.server or "m6t-helper"]
        helper = status.get("helper")
        if helper:
            parts += [
                self.tr("pid {pid}").format(pid=helper["pid"]),
                self.tr("up {duration}").format(duration=format_duration(helper["uptime_s"])),
                helper["config_path"],
            ]
        parts.append(self.tr("operator access") if not self.model.read_only else self.tr("read-only access"))
        return " \u00b7 ".join(parts)

    def change_blocked_reason(self) -> str | None:
        """Why change controls are disabled right now, or ``None`` when they are enabled."""
        if not self.model.reachable:
            return self.model.offline_reason or self.tr("The m6t helper is not reachable.")
        return self.model.refusal(CONNECT)

    def _fill(
        self, table: QTableWidget, rows: Rows, numeric_columns: tuple[int, ...] = (), tips: Rows | None = None
    ) -> None:
        # Refilled only when a row changed: new items repaint the table and resize its columns every time.
        if self._table_rows.get(id(table)) != (rows, tips):
            self._table_rows[id(table)] = (rows, tips)
            _fill(table, rows, numeric_columns, tips)

    def _refresh_tunnels(self, status: schema.Status) -> None:
        tunnels = self.model.tunnels
        several = len(tunnels) > 1
        rows: Rows = []
        tips: Rows = []
        for tunnel in tunnels:
            interface = tunnel["interface"] or DASH
            if several and tunnel.get("primary"):
                interface = self.tr("{interface} (primary)").format(interface=interface)
            gateway = tunnel.get("gateway")
            if gateway is not None and gateway == status.get("gateway"):
                gateway = schema.gateway_label(status)
            rtt, mtu = tunnel.get("rtt_ms"), tunnel.get("mtu")
            attachment = tunnel.get("attachment")
            rows.append(
                (
                    interface,
                    uplink_text(tunnel),
                    tunnel_label(tunnel["state"]),
                    tunnel.get("address") or DASH,
                    DASH if rtt is None else f"{rtt:.1f} ms",
                    DASH if mtu is None else str(mtu),
                    gateway or DASH,
                )
            )
            router = attachment.get("router") if attachment else None
            tips.append(
                (
                    "",
                    self.tr("router {router}").format(router=router) if router else "",
                    str(tunnel.get("detail") or ""),
                    "",
                    "",
                    "",
                    "",
                )
            )
        self._fill(self.tunnels_table, rows, (4, 5), tips)
        primary = next((tunnel["interface"] for tunnel in tunnels if tunnel.get("primary")), None)
        note = (
            self.tr(
                "The Status page describes the primary tunnel, {interface}: the one on the path the system "
                "prefers toward the gateway."
            ).format(interface=primary)
            if several and primary
            else ""
        )
        if note != self.tunnels_note.text():
            self.tunnels_note.setText(note)
            self.tunnels_note.setVisible(bool(note))

    def _refresh_fields(self, status: schema.Status, now: float) -> None:
        model = self.model
        self._refresh_tunnels(status)
        set_text = {key: label.setText for key, label in self._fields.items()}
        attachment = status.get("attachment")
        set_text["egress"](
            attachment["local_ipv4"] if attachment else self.tr("none (no IPv4 path toward the gateway)")
        )
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
        set_text["mtu_configured"](DASH if configured is None else self.tr("{mtu} bytes").format(mtu=configured))
        effective = status.get("mtu")
        set_text["mtu_effective"](DASH if effective is None else self.tr("{mtu} bytes").format(mtu=effective))
        set_text["mtu_search"](search_text(detail.get("search") if detail else None))
        evidence = model.last_mtu
        helper_evidence = detail["last_evidence"] if detail else None
        if helper_evidence is not None and (evidence is None or (helper_evidence["time"] or 0) >= evidence.time):
            when = helper_evidence["time"]
            set_text["mtu_evidence"](
                (
                    self.tr("path MTU {mtu} bytes at {clock} ({source})")
                    if when is not None
                    else self.tr("path MTU {mtu} bytes ({source})")
                ).format(mtu=helper_evidence["path_mtu"], clock=format_clock(when), source=helper_evidence["source"])
            )
        elif evidence is None:
            set_text["mtu_evidence"](self.tr("none") if detail else self.tr("none since the tray started"))
        else:
            why = evidence.reason or self.tr("unknown")
            if evidence.path_mtu:
                why = self.tr("{why}, path MTU {mtu}").format(why=why, mtu=evidence.path_mtu)
            set_text["mtu_evidence"](
                self.tr("{mtu} bytes at {clock} ({why})").format(
                    mtu=evidence.mtu, clock=format_clock(evidence.time), why=why
                )
            )
        set_text["mtu_probe"](self._probe_text)

        keepalive = status.get("keepalive") or {}
        # Keys beyond the schema's KeepaliveInfo are shown when a helper sends them (shapes only grow).
        extra = cast(Mapping[str, Any], keepalive)
        interval = keepalive.get("interval_s") or model.config_value("tunnel.keepalive_interval")
        set_text["ka_interval"](DASH if interval is None else self.tr("{seconds} s").format(seconds=f"{interval:g}"))
        last_sent = extra.get("last_sent")
        set_text["ka_sent"](_ago(float(last_sent), now) if isinstance(last_sent, int | float) else DASH)
        set_text["ka_reply"](_ago(model.keepalive_reply_at, now))
        rtt = keepalive.get("rtt_ms")
        set_text["ka_rtt"](DASH if rtt is None else f"{rtt:.1f} ms")
        missed = extra.get("missed")
        set_text["ka_missed"](str(missed) if isinstance(missed, int) else DASH)

        counters = model.counters()
        self._fill(
            self.counters_table, [(name, f"{value:,}") for name, value in counters if not is_drop_counter(name)], (1,)
        )
        self._fill(self.drops_table, [(name, f"{value:,}") for name, value in counters if is_drop_counter(name)], (1,))
        regenerations = model.regenerations()
        self.regen_count.setText(self.tr("%n new address(es) drawn, newest first.", "", len(regenerations)))
        self._fill(
            self.history_table,
            [
                (format_clock(r["time"]), reason_label(r.get("reason")), r.get("old") or DASH, r.get("new") or DASH)
                for r in reversed(regenerations)
            ],
        )

    def _refresh_charts(self, now: float) -> None:
        self._charts_at = now
        rtt = list(self.model.rtt)
        self.rtt_chart.set_series(0, [s.time - now for s in rtt], [s.rtt_ms / 1000 for s in rtt])
        rates = list(self.model.rates)
        ages = [s.time - now for s in rates]
        self.rate_chart.set_series(0, ages, [s.rx_bps for s in rates])
        self.rate_chart.set_series(1, ages, [s.tx_bps for s in rates])
        samples = (rtt[-1] if rtt else None, len(rtt), rates[-1] if rates else None, len(rates))
        if samples != self._charted:
            self._charted = samples
            self._summarise(rtt, rates)

    def _summarise(self, rtt: list[RttSample], rates: list[RateSample]) -> None:
        """The charts' text equivalent: the numbers a reader would take from them."""
        if rtt:
            values = [s.rtt_ms for s in rtt]
            text = self.tr(
                "Round trip: last {last:.1f} ms, lowest {low:.1f} ms, average {avg:.1f} ms, "
                "highest {high:.1f} ms ({count} answers in 5 min)."
            ).format(
                last=values[-1], low=min(values), avg=sum(values) / len(values), high=max(values), count=len(values)
            )
        else:
            text = self.tr("Round trip: no keepalive answer in the last 5 minutes.")
        self.rtt_summary.setText(text)
        self.rtt_chart.describe_data(text)
        if rates:
            rx = [s.rx_bps for s in rates]
            tx = [s.tx_bps for s in rates]
            text = self.tr(
                "Received: now {rx_now}, average {rx_avg}, peak {rx_peak}. "
                "Sent: now {tx_now}, average {tx_avg}, peak {tx_peak}."
            ).format(
                rx_now=format_bits_per_second(rx[-1]),
                rx_avg=format_bits_per_second(sum(rx) / len(rx)),
                rx_peak=format_bits_per_second(max(rx)),
                tx_now=format_bits_per_second(tx[-1]),
                tx_avg=format_bits_per_second(sum(tx) / len(tx)),
                tx_peak=format_bits_per_second(max(tx)),
            )
        else:
            text = self.tr("Throughput: no traffic measured in the last 5 minutes.")
        self.rate_summary.setText(text)
        self.rate_chart.describe_data(text)

    # ---------------------------------------------------------------------------------------- actions

    def toggle(self) -> None:
        up = not wants_disconnect_action(state=self.model.state, wanted=self.model.wanted)

        def done(outcome: Outcome) -> None:
            if not outcome.ok:
                self.set_message(outcome.message, error=True)

        self.set_message("")
        self.model.set_wanted(up, done)

    def probe_mtu(self) -> None:
        self._probe_text = self.tr("probing…")
        self.probe_button.setEnabled(False)
        self.refresh()

        def done(outcome: Outcome) -> None:
            if outcome.ok and isinstance(outcome.result, dict):
                result = cast(schema.MtuProbeResult, outcome.result)
                previous = result.get("previous")
                mtu, clock = result["mtu"], format_clock(time.time())
                if previous is not None and previous != mtu:
                    self._probe_text = self.tr("{mtu} bytes (was {previous}) at {clock}").format(
                        mtu=mtu, previous=previous, clock=clock
                    )
                    self.set_message(
                        self.tr("MTU probe: the path carries {mtu}-byte IPv6 packets (was {previous}).").format(
                            mtu=mtu, previous=previous
                        )
                    )
                else:
                    self._probe_text = self.tr("{mtu} bytes at {clock}").format(mtu=mtu, clock=clock)
                    self.set_message(self.tr("MTU probe: the path carries {mtu}-byte IPv6 packets.").format(mtu=mtu))
            else:
                self._probe_text = self.tr("failed: {why}").format(why=outcome.message)
                self.set_message(self.tr("MTU probe failed: {why}").format(why=outcome.message), error=True)
            self.refresh()

        self.model.call(Method.MTU_PROBE, None, done)

    def export_diagnostics(self) -> None:
        self.show()
        self.raise_()
        name = time.strftime("m6t-diagnostics-%Y%m%d-%H%M%S.json")
        path = dialogs.ask_save_path(self, self.tr("Export diagnostics"), name, self.tr("JSON (*.json);;All files (*)"))
        if path is None:
            return

        def done(outcome: Outcome) -> None:
            if not outcome.ok or not isinstance(outcome.result, dict):
                self.set_message(self.tr("Diagnostics failed: {why}").format(why=outcome.message), error=True)
                return
            bundle = cast(schema.DiagnosticsResult, outcome.result).get("bundle", {})
            try:
                path.write_text(json.dumps(bundle, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            except OSError as exc:
                self.set_message(self._write_failed(path, exc), error=True)
                return
            self.set_message(self.tr("Diagnostics saved to {path}.").format(path=path))

        self.set_message(self.tr("Collecting diagnostics…"))
        self.model.call(Method.DIAGNOSTICS, None, done)

    def _write_failed(self, path: Path, exc: OSError) -> str:
        return self.tr("Could not write {path}: {why}").format(path=path, why=exc.strerror or exc)

    def load_log(self) -> None:
        def done(outcome: Outcome) -> None:
            if not outcome.ok or not isinstance(outcome.result, dict):
                self.log_view.setPlainText(self.tr("The log could not be read: {why}").format(why=outcome.message))
                return
            result = cast(schema.LogResult, outcome.result)
            lines = [
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(entry['time']))} "
                f"{entry.get('level', '').upper():7} {entry.get('message', '')}"
                for entry in result.get("entries", [])
            ]
            if result.get("dropped"):
                lines.insert(
                    0, self.tr("({count} older entries fell out of the helper's log)").format(count=result["dropped"])
                )
            self.log_view.setPlainText("\n".join(lines))
            self.log_view.verticalScrollBar().setValue(self.log_view.verticalScrollBar().maximum())

        self.model.call(Method.LOG, {"limit": LOG_LIMIT}, done)

    def copy_log(self) -> None:
        QGuiApplication.clipboard().setText(self.log_view.toPlainText())
        self.set_message(self.tr("Log copied to the clipboard."))

    def save_log(self) -> None:
        path = dialogs.ask_save_path(
            self,
            self.tr("Save log"),
            time.strftime("m6t-log-%Y%m%d-%H%M%S.txt"),
            self.tr("Text (*.txt);;All files (*)"),
        )
        if path is None:
            return
        try:
            path.write_text(self.log_view.toPlainText() + "\n", encoding="utf-8")
        except OSError as exc:
            self.set_message(self._write_failed(path, exc), error=True)
            return
        self.set_message(self.tr("Log saved to {path}.").format(path=path))
