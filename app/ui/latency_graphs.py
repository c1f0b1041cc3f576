"""Live per-stage latency graphs: one small scrolling plot per stage (x = reply number, y = ms) over the last 50
turns, with the last value, P50 and P90 as text and P50 as a dashed line. Draws `LatencySnapshot`s only."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt
from PyQt6.QtGui import QColor
from PyQt6.QtWidgets import QFrame, QGridLayout, QLabel, QVBoxLayout, QWidget

from app.metrics.turns import STAGES
from app.stages import Latency
from app.ui.theme import MUTED, PANEL, STAGE_COLORS
from app.ui.view_models import STAGE_TITLES, LatencySnapshot, StageSeries


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


class StagePlot(QFrame):
    """One stage: title, readout line and a plot."""

    def __init__(self, stage: str, height: int = 120):
        super().__init__()
        self.stage = stage
        self.setStyleSheet(f"StagePlot {{ background: {PANEL}; border-radius: 6px; }}")
        colour = STAGE_COLORS[stage]
        self.title = QLabel(f"<b style='color:{colour}'>{STAGE_TITLES[stage]}</b>")
        self.readout = QLabel()
        self.readout.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.readout.setStyleSheet(f"color: {MUTED};")
        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(height)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.showGrid(x=False, y=True, alpha=0.15)
        self.plot.setLabel("left", units="ms")
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.plot.getAxis("left").setWidth(66)
        self.plot.getAxis("bottom").setHeight(22)
        self.curve = self.plot.plot([], [], pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=7,
                                    symbolBrush=colour, symbolPen=None, connect="finite")
        self.p50_line = pg.InfiniteLine(angle=0, pen=pg.mkPen(QColor(colour), width=1, style=Qt.PenStyle.DashLine))
        self.p50_line.setVisible(False)
        self.plot.addItem(self.p50_line)
        layout = QGridLayout(self)
        layout.setContentsMargins(8, 6, 8, 4)
        layout.setVerticalSpacing(2)
        layout.addWidget(self.title, 0, 0)
        layout.addWidget(self.readout, 0, 1)
        layout.addWidget(self.plot, 1, 0, 1, 2)
        self.show_series(None)

    def show_series(self, series: StageSeries | None) -> None:
        if series is None or not series.turns:
            self.readout.setText("no turns yet")
            self.curve.setData([], [])
            self.p50_line.setVisible(False)
            return
        self.readout.setText(f"last <b style='color:white'>{_ms(series.last_ms)} ms</b> · "
                             f"P50 <b>{_ms(series.p50_ms)}</b> · P90 <b>{_ms(series.p90_ms)}</b> ms"
                             f" · n={series.n}")
        x = np.asarray(series.turns, dtype=float)
        y = np.asarray(series.values_ms, dtype=float)
        self.curve.setData(x, y)
        finite = y[np.isfinite(y)]
        top = float(finite.max()) if len(finite) else 1.0
        self.plot.getViewBox().setYRange(0, top * 1.2 + 1, padding=0)
        lo, hi = max(0.5, x[-1] - 49.5), max(x[-1] + 0.5, 5.5)
        self.plot.getViewBox().setXRange(lo, hi, padding=0)
        step = 1 if hi - lo <= 12 else 5 if hi - lo <= 60 else 10  # whole reply numbers only
        self.plot.getAxis("bottom").setTickSpacing(step, step)
        if series.p50_ms is not None:
            self.p50_line.setPos(series.p50_ms)
        self.p50_line.setVisible(series.p50_ms is not None)


class LatencyGraphs(QWidget):
    """Voice-to-voice on top, the four stages beneath it."""

    def __init__(self) -> None:
        super().__init__()
        self.plots = {stage: StagePlot(stage) for stage in STAGES}
        self.snapshot: LatencySnapshot | None = None
        header = QLabel(f"Latency per turn  <span style='color:{MUTED}'>(ms; x = reply number, last 50; "
                        "dashed line = P50)</span>")
        grid = QGridLayout()
        grid.setSpacing(8)
        grid.addWidget(self.plots[Latency.V2V], 0, 0, 1, 2)
        for i, stage in enumerate(s for s in STAGES if s is not Latency.V2V):
            grid.addWidget(self.plots[stage], 1 + i // 2, i % 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(header)
        layout.addLayout(grid)

    def show_snapshot(self, snapshot: LatencySnapshot) -> None:
        self.snapshot = snapshot
        for stage, plot in self.plots.items():
            plot.show_series(snapshot.series.get(stage))
