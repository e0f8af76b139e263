"""The tray's icons: one SVG per :class:`~m6t.ui.state.TrayState`, rendered at every size a tray asks for.

The sources live in ``assets/`` (what designers edit and installers ship); ``assets/render.py`` copies
them next to this module so an installed package carries them.  Rendering ourselves with QSvgRenderer,
rather than handing QIcon an SVG file, keeps working where Qt's SVG icon-engine plugin is missing
(some frozen builds) and gives the tray crisp pixmaps at each size instead of one scaled bitmap.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Final

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QIcon, QImage, QPainter, QPixmap
from PySide6.QtSvg import QSvgRenderer

from m6t.ui.state import TrayState

SIZES: Final = (16, 22, 24, 32, 48, 64, 128, 256)
"""Tray and window sizes: 16/22/24 for panels, 32/48 for Windows and HiDPI trays, up to 256 for docks."""

APP_ICON: Final = "m6t"

ICON_FILES: Final[dict[TrayState, str]] = {
    TrayState.DISCONNECTED: "state-disconnected",
    TrayState.WAITING: "state-waiting",
    TrayState.CONNECTING: "state-connecting",
    TrayState.CONNECTED: "state-connected",
    TrayState.DEGRADED: "state-degraded",
    TrayState.ERROR: "state-error",
    TrayState.UNAVAILABLE: "state-unavailable",
}


def svg_source(name: str) -> bytes:
    """The packaged SVG ``name`` (without ``.svg``)."""
    return (resources.files("m6t.ui") / "icons" / f"{name}.svg").read_bytes()


def render_svg(svg: bytes, size: int) -> QImage:
    """A square ARGB image of ``svg`` at ``size`` pixels, transparent where the drawing is."""
    renderer = QSvgRenderer(QByteArray(svg))
    if not renderer.isValid():
        raise ValueError("not a valid SVG document")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return image


@cache
def named_icon(name: str) -> QIcon:
    """A QIcon holding ``name`` rendered at every size in :data:`SIZES` (cached: the tray swaps often)."""
    svg = svg_source(name)
    icon = QIcon()
    for size in SIZES:
        icon.addPixmap(QPixmap.fromImage(render_svg(svg, size)))
    return icon


def state_icon(state: TrayState) -> QIcon:
    return named_icon(ICON_FILES[state])


def app_icon() -> QIcon:
    return named_icon(APP_ICON)
