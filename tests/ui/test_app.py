"""The ``m6t-tray`` entry point: its options and how the pieces are wired."""

from __future__ import annotations

import pytest
from pytestqt.qtbot import QtBot

from m6t.client.api import host
from m6t.client.api.schema import DEFAULT_SOCKET_PATH
from m6t.ui.app import build, parse_args
from m6t.ui.state import TrayState


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
