"""The ``m6t-tray`` entry point: its options and how the pieces are wired."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QObject
from PySide6.QtNetwork import QLocalServer
from pytestqt.qtbot import QtBot

from m6t.client.api import host
from m6t.client.api.schema import DEFAULT_SOCKET_PATH
from m6t.ui.app import SignalWaker, build, parse_args
from m6t.ui.state import TrayState

ROOT = Path(__file__).resolve().parents[2]


def test_socket_option() -> None:
    assert parse_args([]).socket == DEFAULT_SOCKET_PATH
    assert parse_args(["--socket", "/tmp/h.sock"]).socket == "/tmp/h.sock"


def test_build_wires_a_tray_that_waits_for_its_helper(qtbot: QtBot, socket_path: str) -> None:
    tray = build(socket_path)
    qtbot.addWidget(tray.status_window)
    try:
        assert tray.model.connection.socket_path == socket_path
        assert tray.current_icon_state() is TrayState.UNAVAILABLE
        assert not tray.model.connection.is_online()
    finally:
        tray.model.connection.stop()


def test_the_default_address_is_the_platforms(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asked when the tray starts, of the platform: a pipe name where the platform says so."""
    monkeypatch.setattr(host, "default_control_address", lambda: "\\\\.\\pipe\\m6t-helper")
    assert parse_args([]).socket == "\\\\.\\pipe\\m6t-helper"


def test_ctrl_c_ends_the_tray_without_a_polling_timer(socket_dir: Path) -> None:
    """SIGINT reaches Python through the wake-up fd while Qt's loop sleeps, and the tray ends at once.

    The tray connects to a socket that never greets: its next timer (the 5 s greeting timeout) is far, so
    only the wake-up fd can end it within the second allowed."""
    server = QLocalServer()
    assert server.listen(str(socket_dir / "silent.sock")), server.errorString()
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT), XDG_CONFIG_HOME=str(socket_dir))
    code = "import sys; from m6t.ui.app import main; sys.exit(main(sys.argv[1:]))"
    tray = subprocess.Popen(
        [sys.executable, "-c", code, "--socket", str(socket_dir / "silent.sock")],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.waitForNewConnection(60_000), "the tray never connected"  # its event loop is about to run
        time.sleep(1.0)
        assert tray.poll() is None, tray.stderr.read() if tray.stderr else ""
        tray.send_signal(signal.SIGINT)
        assert tray.wait(timeout=1.5) == 0
    finally:
        server.close()
        if tray.poll() is None:
            tray.kill()
            tray.wait()


def test_a_signal_wakes_the_loop_through_the_wakeup_fd(qtbot: QtBot) -> None:
    seen: list[str] = []
    parent = QObject()
    waker = SignalWaker(parent, lambda: seen.append("handler"))
    waker.woken.connect(lambda: seen.append("woken"))
    try:
        os.kill(os.getpid(), signal.SIGINT)
        qtbot.waitUntil(lambda: "woken" in seen, timeout=2000)
        assert "handler" in seen
    finally:
        waker.close()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
