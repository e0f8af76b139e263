"""Fixtures for the tray tests: a fake helper on a private socket and a tray wired to it, all offscreen."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

# Before Qt loads: the tests never need a display, and CI has none.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from PySide6.QtCore import QSettings, QStandardPaths
from pytestqt.qtbot import QtBot

from m6t.client.api.schema import Access, TunnelState
from m6t.ui.autostart import XdgAutostart
from m6t.ui.connection import HelperConnection
from m6t.ui.model import TunnelModel
from m6t.ui.preferences import Preferences
from m6t.ui.state import TrayState
from m6t.ui.tray import TrayController
from tests.ui.fake_helper import FakeHelper, make_status

# Keep QSettings and QStandardPaths away from the real profile of whoever runs the tests.
QStandardPaths.setTestModeEnabled(True)

START_HINT = "Start it with: sudo systemctl start m6t-helper"
WAIT_MS = 3000
TRAY_STATE_OF: dict[str, TrayState] = {
    TunnelState.DISCONNECTED: TrayState.DISCONNECTED,
    TunnelState.WAITING_FOR_NETWORK: TrayState.WAITING,
    TunnelState.SIGN_IN_REQUIRED: TrayState.WAITING,
    TunnelState.CONNECTING: TrayState.CONNECTING,
    TunnelState.CONNECTED: TrayState.CONNECTED,
    TunnelState.DEGRADED: TrayState.DEGRADED,
    TunnelState.ERROR: TrayState.ERROR,
}
"""The icon the tray shows for each helper state."""


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # Unix socket paths are limited to ~104 bytes: pytest's tmp_path can be longer than that.
    directory = Path(tempfile.mkdtemp(prefix="m6t-ui-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def socket_path(socket_dir: Path) -> str:
    return str(socket_dir / "helper.sock")


@pytest.fixture
def make_helper(socket_path: str) -> Iterator[Callable[..., FakeHelper]]:
    helpers: list[FakeHelper] = []

    def make(access: Access = Access.OPERATOR, start: bool = True) -> FakeHelper:
        helper = FakeHelper(socket_path, access)
        helpers.append(helper)
        if start:
            helper.start()
        return helper

    yield make
    for helper in helpers:
        helper.stop()


@pytest.fixture
def helper(make_helper: Callable[..., FakeHelper]) -> FakeHelper:
    return make_helper()


@pytest.fixture
def preferences(tmp_path: Path) -> Preferences:
    return Preferences(QSettings(str(tmp_path / "prefs.ini"), QSettings.Format.IniFormat))


@pytest.fixture
def autostart(tmp_path: Path) -> XdgAutostart:
    return XdgAutostart(tmp_path / "autostart", ["/usr/bin/m6t-tray"])


@pytest.fixture
def connection(socket_path: str) -> Iterator[HelperConnection]:
    conn = HelperConnection(socket_path, retry_min_ms=20, retry_max_ms=100)
    yield conn
    conn.stop()


@pytest.fixture
def model(connection: HelperConnection) -> TunnelModel:
    return TunnelModel(connection)


@pytest.fixture
def make_tray(
    qtbot: QtBot, model: TunnelModel, preferences: Preferences, autostart: XdgAutostart
) -> Iterator[Callable[[], TrayController]]:
    trays: list[TrayController] = []

    def make() -> TrayController:
        tray = TrayController(model, preferences, autostart, START_HINT)
        qtbot.addWidget(tray.status_window)
        trays.append(tray)
        tray.show()
        model.connection.start()
        return tray

    yield make
    for tray in trays:
        tray.icon.hide()
        if tray.settings_dialog is not None:
            tray.settings_dialog.close()
        tray.status_window.close()


@pytest.fixture
def tray(qtbot: QtBot, helper: FakeHelper, make_tray: Callable[[], TrayController]) -> TrayController:
    """A tray connected to a helper that reports a connected tunnel."""
    helper.status = make_status(TunnelState.CONNECTED)
    tray = make_tray()
    wait_online(qtbot, tray.model, helper)
    return tray


def wait_online(qtbot: QtBot, model: TunnelModel, helper: FakeHelper) -> None:
    qtbot.waitUntil(lambda: model.reachable and model.config is not None and helper.subscribers == 1, timeout=WAIT_MS)
