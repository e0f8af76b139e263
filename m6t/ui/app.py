"""``m6t-tray``: the unprivileged tray app; it reaches the tunnel only through the helper's control API."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from m6t.client.api.host import control_address, os_family
from m6t.ui.autostart import autostart_for
from m6t.ui.connection import HelperConnection
from m6t.ui.icons import app_icon
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


def build(socket_path: str) -> TrayController:
    """Everything but the event loop: connection, model, tray (the tests and screenshot script use this)."""
    connection = HelperConnection(socket_path)
    model = TunnelModel(connection)
    preferences = Preferences()
    family = os_family()
    tray = TrayController(model, preferences, autostart_for(family), helper_start_hint(family))
    connection.setParent(tray)
    model.setParent(tray)
    preferences.setParent(tray)
    return tray


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    app = QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("m6t")
    app.setWindowIcon(app_icon())
    # The tray lives on with every window closed.
    app.setQuitOnLastWindowClosed(False)
    tray = build(args.socket)
    tray.show()
    if not QSystemTrayIcon.isSystemTrayAvailable():
        # No tray host (a bare window manager, some Wayland shells): the window is then the only way in.
        tray.show_status()
    tray.model.connection.start()
    # Ctrl-C in a terminal: Python only sees the signal when the interpreter runs, so wake it periodically.
    signal.signal(signal.SIGINT, lambda *_: app.quit())
    waker = QTimer()
    waker.start(250)
    waker.timeout.connect(lambda: None)
    return app.exec()


if __name__ == "__main__":
    raise SystemExit(main())
