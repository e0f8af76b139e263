"""The m6t tray of whatever tree ``PYTHONPATH`` names, run as ``m6t-tray`` runs it, for bench/tray_idle.py.

    PYTHONPATH=TREE python bench/tray_harness.py --socket PATH --counts FILE [--status]

Started by path (not ``-m``) so ``m6t`` comes from ``TREE``.  It calls that tree's own ``m6t.ui.app.main``;
only ``build`` is wrapped, to open the status window (``--status``) and to count its redraws with an event
filter, so the counting lives here and not in the shipped code.  The counts sit in ``FILE`` (three
little-endian int64: redraws, paint events, 1 once a tray host took the icon) through a shared mapping, so
reading them costs the tray nothing.
"""

from __future__ import annotations

import argparse
import mmap
import struct
import sys
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QSystemTrayIcon, QWidget

from m6t.ui import app as tray_app

COUNTS = struct.Struct("<qqq")
BURST_S = 0.010
"""Paint events closer together than this belong to one redraw (a window repaints its widgets in one pass)."""


class RedrawCounter(QObject):
    def __init__(self, window: QWidget, counts: mmap.mmap) -> None:
        super().__init__(window)
        self._window = window
        self._counts = counts
        self._redraws = 0
        self._paints = 0
        self._last = 0.0

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint and isinstance(watched, QWidget) and watched.window() is self._window:
            now = time.monotonic()
            if now - self._last > BURST_S:
                self._redraws += 1
            self._last = now
            self._paints += 1
            self._counts[0:16] = struct.pack("<qq", self._redraws, self._paints)
        return False


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", required=True)
    parser.add_argument("--counts", type=Path, required=True)
    parser.add_argument("--status", action="store_true", help="open the status window")
    args = parser.parse_args()
    args.counts.write_bytes(bytes(COUNTS.size))
    with args.counts.open("r+b") as file:
        counts = mmap.mmap(file.fileno(), COUNTS.size)
    original = tray_app.build
    keep: list[Any] = []

    def build(socket_path: str) -> Any:
        tray = original(socket_path)

        def started() -> None:
            counts[16:24] = struct.pack("<q", int(QSystemTrayIcon.isSystemTrayAvailable() and tray.icon.isVisible()))
            if args.status:
                from PySide6.QtWidgets import QApplication

                counter = RedrawCounter(tray.status_window, counts)
                QApplication.instance().installEventFilter(counter)  # type: ignore[union-attr]
                keep.append(counter)
                tray.show_status()

        QTimer.singleShot(0, started)
        return tray

    tray_app.build = build
    return tray_app.main(["--socket", args.socket])


if __name__ == "__main__":
    sys.exit(main())
