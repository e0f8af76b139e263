"""The status and diagnostics window: every field, the tables, the live charts and its actions."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QTableWidget
from pytestqt.qtbot import QtBot

from m6t.client.api import schema
from m6t.client.api.schema import ErrorCode, EventKind, Method, TunnelState
from m6t.ui import dialogs
from m6t.ui.status_window import StatusWindow
from m6t.ui.tray import TrayController
from tests.ui.conftest import WAIT_MS, wait_online
from tests.ui.fake_helper import ADDRESS, ADDRESS2, GATEWAY, FakeHelper, make_status


@pytest.fixture
def window(qtbot: QtBot, tray: TrayController) -> StatusWindow:
    tray.show_status()
    return tray.status_window


def rows(table: QTableWidget) -> list[list[str]]:
    def text(row: int, column: int) -> str:
        item = table.item(row, column)
        return "" if item is None else item.text()

    return [[text(row, column) for column in range(table.columnCount())] for row in range(table.rowCount())]


def test_shows_attachment_gateway_address_mtu_keepalive(window: StatusWindow) -> None:
    assert window.state_label.text() == "Connected"
    assert window.field("egress") == "192.0.2.10"
    assert window.field("egress_if") == "lan1"
    assert window.field("router") == "192.0.2.1"
    assert window.field("gateway") == GATEWAY
    assert window.field("address") == ADDRESS
    assert window.field("generated").endswith("(10 min ago), connected to a network")
    assert window.field("interface") == "m6t0"
    assert window.field("mtu_configured") == "1472 bytes"
    assert window.field("mtu_effective") == "1472 bytes"
    assert window.field("mtu_evidence") == "none since the tray started"
    assert window.field("ka_interval") == "30 s"
    assert window.field("ka_rtt") == "3.2 ms"
    assert window.field("ka_reply").endswith("(less than a minute ago)")
    assert window.toggle_button.text() == "&Disconnect" and window.toggle_button.isEnabled()
    assert not window.banner.isVisible()


def test_a_failover_names_the_gateway_and_where_it_came_from(
    qtbot: QtBot, window: StatusWindow, tray: TrayController, helper: FakeHelper
) -> None:
    # The helper's own status agrees with the event (the window asks for it after an address event).
    helper.status.update({"address": ADDRESS2, "gateway": "198.51.100.3:3544", "gateway_name": "gw.example.org"})
    helper.push_event(
        EventKind.ADDRESS,
        {
            "address": ADDRESS2,
            "previous": ADDRESS,
            "reason": "probe_unanswered",
            "gateway": "198.51.100.3:3544",
            "gateway_name": "gw.example.org",
        },
    )
    label = "198.51.100.3:3544 (gw.example.org)"
    qtbot.waitUntil(lambda: window.field("gateway") == label, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: f"Gateway: {label}" in tray.icon.toolTip().splitlines(), timeout=WAIT_MS)


def test_counters_and_drops_by_reason(window: StatusWindow) -> None:
    counters = {name: value for name, value in rows(window.counters_table)}
    assert counters["tx_packets"] == "120" and counters["rx_bytes"] == "96,000"
    assert rows(window.drops_table) == [
        ["drops_in.foreign_source", "2"],
        ["drops_in.not_our_address", "1"],
        ["drops_out.no_path", "4"],
    ]


def test_live_events_update_the_window(qtbot: QtBot, window: StatusWindow, helper: FakeHelper) -> None:
    helper.push_event(EventKind.KEEPALIVE, {"rtt_ms": 7.25})
    helper.push_event(
        EventKind.MTU, {"mtu": 1400, "previous": 1472, "configured": 1472, "reason": "icmp", "path_mtu": 1428}
    )
    helper.push_event(
        EventKind.ATTACHMENT,
        {"attachment": {"local_ipv4": "203.0.113.10", "interface": "lan2", "router": "203.0.113.1"}},
    )
    qtbot.waitUntil(lambda: window.field("egress") == "203.0.113.10", timeout=WAIT_MS)
    assert window.field("ka_rtt") == "7.2 ms" or window.field("ka_rtt") == "7.3 ms"
    assert window.field("mtu_effective") == "1400 bytes"
    assert window.field("mtu_configured") == "1472 bytes"
    assert "1400 bytes at" in window.field("mtu_evidence") and "(icmp, path MTU 1428)" in window.field("mtu_evidence")
    helper.push_event(EventKind.ATTACHMENT, {"attachment": None})
    qtbot.waitUntil(lambda: window.field("egress").startswith("none"), timeout=WAIT_MS)


def test_extra_keepalive_facts_when_the_helper_sends_them(
    qtbot: QtBot, make_helper: Callable[..., FakeHelper], make_tray: Callable[[], TrayController]
) -> None:
    helper = make_helper()
    helper.status = make_status(TunnelState.DEGRADED)
    helper.status["keepalive"]["missed"] = 2
    helper.status["keepalive"]["last_sent"] = time.time() - 3
    tray = make_tray()
    wait_online(qtbot, tray.model, helper)
    window = tray.status_window
    window.refresh()
    assert window.field("ka_missed") == "2"
    assert window.field("ka_sent").endswith("(less than a minute ago)")


def test_mtu_detail_from_the_helper_survives_a_tray_restart(
    qtbot: QtBot, make_helper: Callable[..., FakeHelper], make_tray: Callable[[], TrayController]
) -> None:
    helper = make_helper()
    helper.status = make_status(TunnelState.CONNECTED)
    helper.status["mtu"] = 1400
    helper.status["mtu_detail"] = {
        "configured": 1472,
        "effective": 1400,
        "last_evidence": {"source": "emsgsize", "path_mtu": 1428, "time": time.time() - 60},
    }
    tray = make_tray()
    wait_online(qtbot, tray.model, helper)
    window = tray.status_window
    window.refresh()
    assert window.field("mtu_configured") == "1472 bytes"
    assert window.field("mtu_effective") == "1400 bytes"
    assert window.field("mtu_evidence").startswith("path MTU 1428 bytes at ")
    assert window.field("mtu_evidence").endswith("(emsgsize)")
    assert window.field("mtu_search") == "off"


def _search(**changes: object) -> schema.MtuSearchInfo:
    search: schema.MtuSearchInfo = {
        "state": "search_complete",
        "mtu": 1372,
        "found": "icmp",
        "time": time.time() - 5,
        "probes": 3,
        "duration_s": 0.02,
        "fragmentation": False,
        "next_search": time.time() + 600,
        "probes_total": 3,
    }
    search.update(changes)  # type: ignore[typeddict-item]
    return search


@pytest.mark.parametrize(
    ("search", "shown"),
    [
        (_search(), r"1372 bytes at \d\d:\d\d:\d\d \(icmp, 3 probes\)"),
        (_search(state="searching", mtu=None, found=None), "searching\u2026"),
        (
            _search(state="error", mtu=1280, found="floor", fragmentation=True),
            "path under 1308 bytes: 1280 kept, larger packets rely on fragmentation",
        ),
    ],
)
def test_path_mtu_search_is_shown(
    qtbot: QtBot,
    make_helper: Callable[..., FakeHelper],
    make_tray: Callable[[], TrayController],
    search: schema.MtuSearchInfo,
    shown: str,
) -> None:
    helper = make_helper()
    helper.status = make_status(TunnelState.CONNECTED)
    helper.status["mtu"] = search["mtu"] or 1472
    helper.status["mtu_detail"] = {"configured": 1472, "effective": 1372, "last_evidence": None, "search": search}
    tray = make_tray()
    wait_online(qtbot, tray.model, helper)
    window = tray.status_window
    window.refresh()
    assert re.fullmatch(shown, window.field("mtu_search")), window.field("mtu_search")


def test_address_history_with_reasons(qtbot: QtBot, window: StatusWindow, helper: FakeHelper) -> None:
    helper.set_address(ADDRESS2, "attachment_changed")
    qtbot.waitUntil(lambda: window.history_table.rowCount() == 2, timeout=WAIT_MS)
    history = rows(window.history_table)
    assert history[0][1:] == ["the network changed", ADDRESS, ADDRESS2]
    assert history[1][1:] == ["connected to a network", "\u2013", ADDRESS]
    assert window.field("address") == ADDRESS2
    assert window.field("generated").endswith("ago), the network changed")
    assert "2 new address(es)" in window.regen_count.text()


def test_charts_plot_rtt_and_throughput(qtbot: QtBot, window: StatusWindow, helper: FakeHelper) -> None:
    now = time.time()
    for index, rtt in enumerate((3.0, 4.0, 5.0)):
        helper.push_event(EventKind.KEEPALIVE, {"rtt_ms": rtt}, when=now - 30 + index)
    helper.push_event(EventKind.COUNTERS, {"counters": {"rx_bytes": 0, "tx_bytes": 0}}, when=now - 10)
    helper.push_event(EventKind.COUNTERS, {"counters": {"rx_bytes": 125_000, "tx_bytes": 12_500}}, when=now - 9)
    helper.push_event(EventKind.COUNTERS, {"counters": {"rx_bytes": 250_000, "tx_bytes": 25_000}}, when=now - 8)
    qtbot.waitUntil(lambda: len(window.model.rates) == 2, timeout=WAIT_MS)
    window.refresh()
    assert window.rtt_chart.point_count(0) == 3
    assert window.rate_chart.point_count(0) == 2 and window.rate_chart.point_count(1) == 2
    assert [round(sample.rx_bps) for sample in window.model.rates] == [1_000_000, 1_000_000]
    assert [round(sample.tx_bps) for sample in window.model.rates] == [100_000, 100_000]


def test_counter_reset_is_not_negative_traffic(qtbot: QtBot, window: StatusWindow, helper: FakeHelper) -> None:
    now = time.time()
    helper.push_event(EventKind.COUNTERS, {"counters": {"rx_bytes": 5000, "tx_bytes": 5000}}, when=now - 2)
    helper.push_event(EventKind.COUNTERS, {"counters": {"rx_bytes": 10, "tx_bytes": 10}}, when=now - 1)
    helper.push_event(EventKind.COUNTERS, {"counters": {"rx_bytes": 20, "tx_bytes": 20}}, when=now)
    qtbot.waitUntil(lambda: len(window.model.rates) == 1, timeout=WAIT_MS)
    assert window.model.rates[0].rx_bps == 80


def test_mtu_probe_shows_its_result(qtbot: QtBot, window: StatusWindow, helper: FakeHelper) -> None:
    window.probe_button.click()
    qtbot.waitUntil(lambda: window.field("mtu_probe").startswith("1452 bytes (was 1472)"), timeout=WAIT_MS)
    assert "1452-byte" in window.message.text()
    helper.forced_errors[Method.MTU_PROBE] = schema.error_info(ErrorCode.MTU_PROBE_FAILED, hint="Set tunnel.probe.")
    window.probe_button.click()
    qtbot.waitUntil(lambda: window.field("mtu_probe").startswith("failed"), timeout=WAIT_MS)
    assert "The MTU probe failed. Set tunnel.probe." in window.message.text()


def test_log_copy_and_save(qtbot: QtBot, window: StatusWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    window.show_tab("log")
    qtbot.waitUntil(lambda: "keepalive unanswered" in window.log_view.toPlainText(), timeout=WAIT_MS)
    window.log_copy_button.click()
    assert "helper started" in QGuiApplication.clipboard().text()
    target = tmp_path / "log.txt"
    monkeypatch.setattr(dialogs, "ask_save_path", lambda *args: target)
    window.log_save_button.click()
    assert "attached to 192.0.2.10 via lan1" in target.read_text()
    assert str(target) in window.message.text()


def test_diagnostics_failure_is_shown(
    qtbot: QtBot, window: StatusWindow, helper: FakeHelper, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper.forced_errors[Method.DIAGNOSTICS] = schema.error_info(ErrorCode.DIAGNOSTICS_FAILED)
    monkeypatch.setattr(dialogs, "ask_save_path", lambda *args: tmp_path / "x.json")
    window.export_button.click()
    qtbot.waitUntil(lambda: "Diagnostics failed" in window.message.text(), timeout=WAIT_MS)
    assert not (tmp_path / "x.json").exists()


def test_toggle_from_the_window(qtbot: QtBot, window: StatusWindow, helper: FakeHelper) -> None:
    window.toggle_button.click()
    qtbot.waitUntil(lambda: window.toggle_button.text() == "&Connect", timeout=WAIT_MS)
    assert helper.methods()[-1] is Method.DOWN
    assert window.state_label.text() == "Disconnected"


def test_host_problems_are_in_the_banner(
    qtbot: QtBot, make_helper: Callable[..., FakeHelper], make_tray: Callable[[], TrayController]
) -> None:
    helper = make_helper()
    helper.status = make_status(TunnelState.ERROR, problems=[schema.error_info(ErrorCode.TUN_MISSING)])
    tray = make_tray()
    wait_online(qtbot, tray.model, helper)
    tray.show_status()
    assert ErrorCode.TUN_MISSING.sentence in tray.status_window.banner.text()
    assert tray.status_window.banner.isVisible()


def test_a_helper_sending_only_a_regeneration_count(
    qtbot: QtBot, make_helper: Callable[..., FakeHelper], make_tray: Callable[[], TrayController]
) -> None:
    helper = make_helper()
    helper.status = make_status(TunnelState.CONNECTED, regenerations=3)
    tray = make_tray()
    wait_online(qtbot, tray.model, helper)
    tray.show_status()
    window = tray.status_window
    assert window.history_table.rowCount() == 0
    assert window.field("generated") == "\u2013"
    helper.set_address(ADDRESS2, "attachment_changed")
    qtbot.waitUntil(lambda: tray.model.address == ADDRESS2, timeout=WAIT_MS)


def test_a_tick_redraws_only_what_the_clock_changed(
    qtbot: QtBot, window: StatusWindow, helper: FakeHelper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a second the "ago" texts move; the tables are not refilled and the charts' time axis moves only
    once the newest point would have moved visibly."""
    now = time.time()
    helper.push_event(EventKind.KEEPALIVE, {"rtt_ms": 5.0}, when=now - 3)
    qtbot.waitUntil(lambda: window.rtt_chart.point_count(0) == 1, timeout=WAIT_MS)
    item = window.counters_table.item(0, 1)
    drawn: list[int] = []
    monkeypatch.setattr(window.rtt_chart, "set_series", lambda *args: drawn.append(1))
    step = window.rtt_chart.redraw_step_s()
    clock = [now + 60]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    window._tick()
    assert drawn == [1], "a minute later the axis has moved"
    clock[0] += step / 2
    window._tick()
    assert drawn == [1], "not visibly yet: the chart is left alone"
    clock[0] += step
    window._tick()
    assert drawn == [1, 1]
    assert window.counters_table.item(0, 1) is item, "same counters: the table is not refilled"
