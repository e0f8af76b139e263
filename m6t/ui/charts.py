"""Live charts of the last minutes, drawn by pyqtgraph (pure Python on top of the Qt we already ship).

pyqtgraph has no type information, so it is confined to this module: the rest of the GUI sees typed
widgets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import pyqtgraph as pg  # type: ignore[import-untyped]
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

from m6t.ui.model import HISTORY_S

MIN_WIDTH: Final = 320
MIN_HEIGHT: Final = 160
VISIBLE_PX: Final = 2
"""The time axis is redrawn once the newest point would have moved this many pixels: a one-pixel creep
every half second is invisible, and each redraw costs a wakeup."""


class LiveChart(QWidget):
    """One plot, x = seconds before now (so the newest point sits at the right edge), one line per series.

    ``unit`` is a base SI unit (``"s"``, ``"bit/s"``): pyqtgraph then labels the axis with the fitting prefix
    (ms, kbit/s) as values grow or shrink, which a fixed unit could not.
    """

    def __init__(
        self,
        title: str,
        axis_label: str,
        unit: str,
        series: Sequence[tuple[str, str]],
        x_label: str,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        palette = self.palette()
        background = palette.color(QPalette.ColorRole.Base)
        foreground = palette.color(QPalette.ColorRole.Text)
        self._widget: Any = pg.PlotWidget(background=background)
        # A picture, not a control (mouse and menu are off): the numbers beside it are its text, and Tab
        # should not stop on it.
        self._widget.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for widget in (self, self._widget):
            widget.setAccessibleName(title)
            widget.setAccessibleDescription(title)
        plot = self._widget.getPlotItem()
        # The series are named in the title, in their colours: a legend inside the plot would hide data.
        names = "".join(
            f'&nbsp;&nbsp;<span style="color:{color}">\u25ac {name}</span>' for name, color in series if len(series) > 1
        )
        plot.setTitle(f"{title}{names}", color=foreground.name())
        # No grid: Qt's raster engine fills lines that span the plot in tiles on its thread pool, hundreds of
        # thread wakeups per redraw (measured by bench/tray_idle.py); the axes' ticks and the numbers beside
        # the chart carry the values.
        plot.setLabel("bottom", x_label, color=foreground.name())
        plot.setLabel("left", axis_label, units=unit, color=foreground.name())
        for axis in ("left", "bottom"):
            plot.getAxis(axis).setPen(pg.mkPen(foreground))
            plot.getAxis(axis).setTextPen(pg.mkPen(foreground))
        plot.setXRange(-HISTORY_S, 0, padding=0.01)
        plot.setMouseEnabled(x=False, y=False)
        plot.hideButtons()
        plot.setMenuEnabled(False)
        plot.enableAutoRange(axis="y")
        self._curves: list[Any] = []
        for name, color in series:
            pen = pg.mkPen(QColor(color), width=2)
            self._curves.append(
                plot.plot(
                    [], [], name=name, pen=pen, symbol="o", symbolSize=4, symbolBrush=QColor(color), symbolPen=None
                )
            )
        # Its size comes from the window, never from the plot: tick labels that widen as values grow would
        # otherwise re-lay out the whole window, and repaint it, at every new sample.
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setMinimumSize(MIN_WIDTH, MIN_HEIGHT)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._widget)

    def set_series(self, index: int, ages: Sequence[float], values: Sequence[float]) -> None:
        """``ages`` in seconds before now (negative or zero), ``values`` in the chart's base unit."""
        self._curves[index].setData(list(ages), list(values))

    def describe_data(self, text: str) -> None:
        """What the chart shows, in words (the numbers beside it): what assistive technology reads out."""
        for widget in (self, self._widget):
            widget.setAccessibleDescription(text)

    def redraw_step_s(self) -> float:
        """How long the newest point takes to move visibly left (:data:`VISIBLE_PX`): redrawing the time
        axis sooner shows nothing."""
        width = self._widget.getPlotItem().getViewBox().width()
        return VISIBLE_PX * HISTORY_S / width if width > 0 else HISTORY_S

    def point_count(self, index: int) -> int:
        data = self._curves[index].getData()[0]
        return 0 if data is None else len(data)
