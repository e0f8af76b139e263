"""Live charts of the last minutes, drawn by pyqtgraph (pure Python on top of the Qt we already ship).

pyqtgraph has no type information, so it is confined to this module: the rest of the GUI sees typed
widgets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyqtgraph as pg  # type: ignore[import-untyped]
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QVBoxLayout, QWidget

from m6t.ui.model import HISTORY_S


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
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        palette = self.palette()
        background = palette.color(QPalette.ColorRole.Base)
        foreground = palette.color(QPalette.ColorRole.Text)
        self._widget: Any = pg.PlotWidget(background=background)
        plot = self._widget.getPlotItem()
        # The series are named in the title, in their colours: a legend inside the plot would hide data.
        names = "".join(
            f'&nbsp;&nbsp;<span style="color:{color}">\u25ac {name}</span>' for name, color in series if len(series) > 1
        )
        plot.setTitle(f"{title}{names}", color=foreground.name())
        plot.showGrid(x=True, y=True, alpha=0.25)
        plot.setLabel("bottom", "seconds ago", color=foreground.name())
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
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._widget)

    def set_series(self, index: int, ages: Sequence[float], values: Sequence[float]) -> None:
        """``ages`` in seconds before now (negative or zero), ``values`` in the chart's base unit."""
        self._curves[index].setData(list(ages), list(values))

    def point_count(self, index: int) -> int:
        data = self._curves[index].getData()[0]
        return 0 if data is None else len(data)
