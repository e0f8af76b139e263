"""Screenshots of the tray menu, the status window and the settings dialog, for the README.

    python scripts/screenshots.py [--out docs/screenshots] [--lang fr]

Runs the real tray under Xvfb, with ``trayer`` as the system tray host, against the fake helper the GUI
tests use (``tests/ui/fake_helper.py``), fed a few minutes of keepalives and traffic so the charts have
something to show.  Needs the Debian packages ``xvfb`` and ``trayer`` (and Qt's xcb libraries, which
``scripts/setup.sh`` installs).  Nothing outside the output directory and a temporary directory is touched.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCREEN = (1280, 800)
TRAY_HEIGHT = 30


def _start_xvfb() -> tuple[subprocess.Popen[bytes], str]:
    """Xvfb on a free display number (it picks one and tells us through ``-displayfd``)."""
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        number = pipe.readline().strip()
    if not number:
        server.kill()
        raise SystemExit("screenshots: Xvfb did not start")
    return server, f":{number}"


def outer(out: Path, lang: str | None) -> int:
    missing = [tool for tool in ("Xvfb", "trayer") if shutil.which(tool) is None]
    if missing:
        print(f"screenshots: missing {', '.join(missing)} (Debian packages: xvfb, trayer)", file=sys.stderr)
        return 2
    server, display = _start_xvfb()
    try:
        env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb")
        env.pop("WAYLAND_DISPLAY", None)
        argv = [sys.executable, __file__, "--inner", "--out", str(out)]
        if lang:
            # The tray takes its language from the locale, as on a desktop session.
            env.update(LANG=f"{lang}_{lang.upper()}.UTF-8", LANGUAGE=lang)
            env.pop("LC_ALL", None)
            env.pop("LC_MESSAGES", None)
            argv += ["--lang", lang]
        return subprocess.run(argv, env=env, check=False).returncode
    finally:
        server.terminate()
        server.wait(10)


# ----------------------------------------------------------------------------------------- inside Xvfb


def inner(out: Path, lang: str | None) -> int:
    sys.path.insert(0, str(ROOT))
    from PySide6.QtCore import QPoint, QRect, QSettings, QStandardPaths, Qt
    from PySide6.QtGui import QColor, QLinearGradient, QPainter, QPaintEvent
    from PySide6.QtWidgets import QApplication, QSystemTrayIcon, QWidget

    from m6t.client.api.schema import EventKind, TunnelState
    from m6t.ui.autostart import XdgAutostart
    from m6t.ui.connection import HelperConnection
    from m6t.ui.i18n import install_translators
    from m6t.ui.model import TunnelModel
    from m6t.ui.preferences import APPLICATION, ORGANIZATION, NotifyLevel, Preferences
    from m6t.ui.state import helper_start_hint
    from m6t.ui.tray import TrayController
    from tests.ui.fake_helper import ADDRESS2, FakeHelper, make_status

    QStandardPaths.setTestModeEnabled(True)
    app = QApplication([sys.argv[0]])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setQuitOnLastWindowClosed(False)
    install_translators(app)
    suffix = f"-{lang}" if lang else ""

    def settle(ms: int, until: Callable[[], bool] = lambda: False) -> None:
        deadline = time.monotonic() + ms / 1000
        while time.monotonic() < deadline and not until():
            app.processEvents()
            time.sleep(0.01)

    class Desktop(QWidget):
        """A plain desktop behind the tray host, so the menu is not shown against Xvfb's black root."""

        def paintEvent(self, event: QPaintEvent) -> None:
            painter = QPainter(self)
            gradient = QLinearGradient(0, 0, 0, self.height())
            gradient.setColorAt(0, QColor("#3b5a78"))
            gradient.setColorAt(1, QColor("#1f3346"))
            painter.fillRect(self.rect(), gradient)

    desktop = Desktop()
    desktop.setWindowFlag(Qt.WindowType.FramelessWindowHint)
    desktop.setGeometry(0, 0, *SCREEN)
    desktop.show()
    settle(200)
    # Started after the desktop is mapped: without a window manager, the last window mapped is on top.
    trayer = subprocess.Popen(
        ["trayer", "--edge", "top", "--align", "right", "--widthtype", "request", "--height", str(TRAY_HEIGHT),
         "--SetDockType", "true", "--transparent", "false", "--tint", "0x2b2b2b", "--margin", "8"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="m6t-shots-"))
    helper = FakeHelper(str(work / "helper.sock"))
    try:
        settle(5000, QSystemTrayIcon.isSystemTrayAvailable)
        if not QSystemTrayIcon.isSystemTrayAvailable():
            print("screenshots: trayer did not provide a system tray", file=sys.stderr)
            return 1

        now = time.time()
        helper.status = make_status(TunnelState.CONNECTED, since=now - 2400)
        helper.status["regenerations"] = [
            {"time": now - 3900, "reason": "attached", "old": None, "new": "fd6d:3674:a1b2:0:1:3c1:77e0:1a2b"},
            {"time": now - 2400, "reason": "keepalive_unanswered", "old": "fd6d:3674:a1b2:0:1:3c1:77e0:1a2b",
             "new": helper.status["address"]},
        ]  # fmt: skip
        helper.start()
        connection = HelperConnection(helper.path)
        model = TunnelModel(connection)
        preferences = Preferences(QSettings(str(work / "prefs.ini"), QSettings.Format.IniFormat))
        tray = TrayController(model, preferences, XdgAutostart(work / "autostart", ["m6t-tray"]),
                              helper_start_hint("linux"))  # fmt: skip
        tray.show()
        connection.start()
        settle(5000, lambda: model.reachable and model.config is not None and helper.subscribers == 1)

        # Five minutes of a laptop's life: keepalives every 10 s with some jitter, a download in bursts, an
        # MTU lowered by ICMP evidence, and a move to another network just now.  Bubbles would cover the
        # menu in its screenshot, so they are off while the story is told.
        preferences.notify_level = NotifyLevel.OFF
        jitter = random.Random(6)
        rx = tx = 0
        rtt = 18.0
        for step in range(100):
            when = now - 300 + step * 3
            rate = 2_000_000 + 1_500_000 * max(0.0, math.sin(step / 9)) + jitter.uniform(-2e5, 2e5)
            rx += int(rate / 8 * 3)
            tx += int(rate / 8 * 3 / 12)
            counters = {**helper.status["counters"], "rx_bytes": rx, "tx_bytes": tx, "rx_packets": rx // 1200,
                        "tx_packets": tx // 200}  # fmt: skip
            helper.push_event(EventKind.COUNTERS, {"counters": counters}, when=when)
            if step % 3 == 0:
                rtt = max(9.0, rtt + jitter.uniform(-3.0, 3.0))
                helper.push_event(EventKind.KEEPALIVE, {"rtt_ms": rtt}, when=when)
        helper.status["counters"] = counters
        helper.status["keepalive"] = {"rtt_ms": rtt, "age_s": 3.0, "interval_s": 30.0}
        helper.status["mtu"] = 1452
        helper.push_event(
            EventKind.MTU,
            {"mtu": 1452, "previous": 1472, "configured": 1472, "reason": "icmp", "path_mtu": 1480},
            when=now - 200,
        )
        helper.status["attachment"] = {"local_ipv4": "203.0.113.10", "interface": "wlan0", "router": "203.0.113.1"}
        helper.push_event(EventKind.ATTACHMENT, {"attachment": helper.status["attachment"]})
        helper.set_address(ADDRESS2, "attachment_changed")
        settle(800)
        preferences.notify_level = NotifyLevel.ALL

        out.mkdir(parents=True, exist_ok=True)
        shots: list[Path] = []

        window = tray.status_window
        window.resize(1040, 700)
        window.move(60, 60)
        window.show()
        settle(800)
        window.grab().save(str(out / f"status-window{suffix}.png"))
        shots.append(out / f"status-window{suffix}.png")
        window.hide()

        tray.show_settings()
        dialog = tray.settings_dialog
        assert dialog is not None
        dialog.move(80, 60)
        settle(600)
        dialog.grab().save(str(out / f"settings{suffix}.png"))
        shots.append(out / f"settings{suffix}.png")
        # One mistake caught while typing, with the fix it suggests.
        dialog.prefix_edit.setText("fd6d:3674:a1b2:0:1::7/80")
        settle(600)
        dialog.grab().save(str(out / f"settings-validation{suffix}.png"))
        shots.append(out / f"settings-validation{suffix}.png")
        dialog.reject()
        settle(200)

        icon = tray.icon.geometry()
        menu = tray.menu
        size = menu.sizeHint()
        menu.popup(QPoint(max(0, icon.right() - size.width()), icon.bottom() + 2))
        settle(300)
        menu.setActiveAction(tray.status_action)
        settle(500)
        shown = menu.geometry()
        left = max(0, shown.left() - 120)
        area = QRect(left, 0, SCREEN[0] - left, min(SCREEN[1], shown.bottom() + 40))
        screen = app.primaryScreen()
        screen.grabWindow(0, area.x(), area.y(), area.width(), area.height()).save(str(out / f"tray-menu{suffix}.png"))
        shots.append(out / f"tray-menu{suffix}.png")
        menu.hide()
        for shot in shots:
            print(shot.relative_to(ROOT) if shot.is_relative_to(ROOT) else shot)
        connection.stop()
        return 0
    finally:
        helper.stop()
        trayer.terminate()
        trayer.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--lang", help="the language to show (e.g. fr): the tray, status window and menu only")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    return inner(args.out.resolve(), args.lang) if args.inner else outer(args.out.resolve(), args.lang)


if __name__ == "__main__":
    raise SystemExit(main())
