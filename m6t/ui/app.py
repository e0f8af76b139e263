"""``m6t-tray``: the unprivileged tray app; it reaches the tunnel only through the helper's control API."""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Final

from PySide6.QtCore import QObject, QSocketNotifier, Signal
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from m6t.client.api.host import control_address, os_family
from m6t.ui.autostart import autostart_for
from m6t.ui.connection import HelperConnection
from m6t.ui.i18n import install_translators
from m6t.ui.icons import app_icon
from m6t.ui.key_agent import KeyAgent
from m6t.ui.model import TunnelModel
from m6t.ui.preferences import APPLICATION, ORGANIZATION, Preferences
from m6t.ui.state import helper_start_hint
from m6t.ui.tray import TrayController


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="m6t-tray", description="Tray icon for the m6t IPv6 tunnel.")
    address = control_address()
    parser.add_argument(
        "--socket",
        default=address,
        metavar="ADDRESS",
        help=f"where the helper listens: a socket path, a pipe name on Windows (default: {address})",
    )
    return parser.parse_args(argv)


class SignalWaker(QObject):
    """Ctrl-C (and a polite SIGTERM) end the event loop without a timer polling for them.

    Python runs a signal's handler only when the interpreter gets control, which Qt's loop, asleep in C,
    does not give it.  The documented way out (``signal.set_wakeup_fd``): the C-level handler writes the
    signal's number to a socket, Qt watches that socket, and the slot it wakes runs Python, which runs the
    handler.  Nothing wakes while no signal comes.
    """

    woken = Signal()
    """The wake-up fd had bytes: a signal arrived (its Python handler runs right after)."""

    SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, parent: QObject, on_signal: Callable[[], None]) -> None:
        super().__init__(parent)
        self._reader, self._writer = socket.socketpair()
        for end in (self._reader, self._writer):
            end.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._notifier = QSocketNotifier(self._reader.fileno(), QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self._drain)
        self._previous = {number: signal.signal(number, lambda *_: on_signal()) for number in self.SIGNALS}

    def _drain(self) -> None:
        try:
            while self._reader.recv(64):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        self.woken.emit()

    def close(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        signal.set_wakeup_fd(self._previous_fd)
        self._notifier.setEnabled(False)
        self._reader.close()
        self._writer.close()


def build(socket_path: str) -> TrayController:
    """Everything but the event loop: connection, model, tray (the tests and screenshot script use this)."""
    connection = HelperConnection(socket_path)
    model = TunnelModel(connection)
    preferences = Preferences()
    family = os_family()
    tray = TrayController(model, preferences, autostart_for(family), helper_start_hint(family))
    connection.setParent(tray)
    model.setParent(tray)
    KeyAgent(model)
    preferences.setParent(tray)
    return tray


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    app = QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("m6t")
    app.setWindowIcon(app_icon())
    install_translators(app)
    # The tray lives on with every window closed.
    app.setQuitOnLastWindowClosed(False)
    tray = build(args.socket)
    tray.show()
    if not QSystemTrayIcon.isSystemTrayAvailable():
        # No tray host (a bare window manager, some Wayland shells): the window is then the only way in.
        tray.show_status()
    tray.model.connection.start()
    waker = SignalWaker(app, app.quit)
    try:
        return app.exec()
    finally:
        waker.close()


if __name__ == "__main__":
    raise SystemExit(main())
