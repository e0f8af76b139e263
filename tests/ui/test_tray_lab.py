"""The tray against the real helper in the lab: live address, round trip and counters, and a NAT move.

Needs root (network namespaces, TUN): the standard lab with the real gateway and the real ``m6t-helper``
in the mobile node, started as ``m6t lab demo`` starts them (:func:`m6t.lab.demo.demo_lab`).  The tray
runs in the test's own namespace and reaches the helper through its socket path, as a desktop user would.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from m6t.client.api.schema import TunnelState
from m6t.lab import addresses as a
from m6t.lab.demo import MN_PREFIX, DemoLab, demo_lab
from m6t.ui.autostart import XdgAutostart
from m6t.ui.connection import HelperConnection
from m6t.ui.model import TunnelModel
from m6t.ui.preferences import Preferences
from m6t.ui.state import TrayState
from m6t.ui.tray import TrayController
from tests.ui.conftest import START_HINT

pytestmark = [pytest.mark.lab, pytest.mark.timeout(240)]

CONNECT_MS = 40_000


@pytest.fixture
def demo() -> Iterator[DemoLab]:
    with demo_lab() as env:
        yield env


@pytest.fixture
def lab_tray(qtbot: QtBot, demo: DemoLab, preferences: Preferences, tmp_path: Path) -> Iterator[TrayController]:
    connection = HelperConnection(demo.socket_path, retry_min_ms=100, retry_max_ms=1000)
    model = TunnelModel(connection)
    tray = TrayController(model, preferences, XdgAutostart(tmp_path / "autostart", ["m6t-tray"]), START_HINT)
    qtbot.addWidget(tray.status_window)
    tray.show()
    connection.start()
    yield tray
    tray.icon.hide()
    tray.status_window.close()
    connection.stop()


def test_tray_follows_the_real_helper_and_a_nat_move(qtbot: QtBot, demo: DemoLab, lab_tray: TrayController) -> None:
    tray, model = lab_tray, lab_tray.model
    diagnostics = demo.logs
    qtbot.waitUntil(lambda: model.reachable and model.config is not None, timeout=10_000)
    assert not model.read_only, "the test runs as root: operator access"
    if tray.toggle_action.text() == "&Connect":
        tray.toggle_action.trigger()
    qtbot.waitUntil(lambda: tray.current_icon_state() is TrayState.CONNECTED, timeout=CONNECT_MS)

    window = tray.status_window
    tray.show_status()
    first = model.address
    assert first is not None and IPv6Address(first) in IPv6Network(MN_PREFIX), diagnostics()
    window.refresh()
    assert window.field("address") == first
    assert window.field("egress") == a.MN_LAN1
    assert f"Address: {first}" in tray.icon.toolTip()

    # Traffic through the tunnel moves the counters; silence then brings keepalives and their round trip.
    assert demo.ping_ha(count=3), diagnostics()
    qtbot.waitUntil(lambda: dict(model.counters()).get("tx_packets", 0) >= 3, timeout=20_000)
    qtbot.waitUntil(lambda: bool(model.rtt), timeout=30_000)
    window.refresh()
    assert window.field("ka_rtt").endswith(" ms")
    assert window.rtt_chart.point_count(0) >= 1
    assert window.counters_table.rowCount() > 0

    # The laptop moves to the other NAT: the tray must follow through reattaching to the new address.
    visited: list[TrayState] = []
    model.changed.connect(lambda: visited.append(model.tray_state))
    seen: list[tuple[str, str]] = []
    tray.notified.connect(lambda title, text: seen.append((title, text)))
    demo.lab.move_mn("nat2")
    qtbot.waitUntil(
        lambda: model.state == TunnelState.CONNECTED and model.address not in (None, first), timeout=CONNECT_MS
    )
    qtbot.waitUntil(lambda: tray.current_icon_state() is TrayState.CONNECTED, timeout=5_000)
    second = model.address
    assert second is not None
    assert any(state is not TrayState.CONNECTED for state in visited), f"the icon never left connected: {visited}"
    window.refresh()
    assert window.field("address") == second
    assert window.field("egress") == a.MN_LAN2
    assert f"Address: {second}" in tray.icon.toolTip()
    qtbot.waitUntil(lambda: any(r.get("new") == second for r in model.regenerations()), timeout=5_000)
    assert any(title == "m6t: new tunnel address" and second in text for title, text in seen), seen
