"""The last turn's timeline: horizontal bars per lane (cpu: VAD ticks and Smart Turn; device: ASR, LLM chunks and TTS
segments, one colour per stage; LLM server: the LLM's requests when it runs on a server; mic: the user's speech;
speaker: playback and barge-in), on an axis in ms whose zero is the moment the user stopped speaking. A faint line
before a bar is the time its unit waited in the queue. Draws `Timeline`s only."""
from __future__ import annotations

from collections import defaultdict

import pyqtgraph as pg
from PyQt6.QtCore import Qt
from PyQt6.QtGui import QColor
from PyQt6.QtWidgets import QLabel, QVBoxLayout, QWidget

from app.stages import MIC_LANE, SPEAKER_LANE, SPECULATION_LANE, Stage
from app.ui.theme import MUTED, STAGE_COLORS, TEXT
from app.ui.view_models import TIMELINE_ROWS, Timeline
from scheduler import CPU_LANE, DEVICE_LANE, REMOTE_LANE

ROW_NAMES = {CPU_LANE: "CPU lane", DEVICE_LANE: "device lane", REMOTE_LANE: "LLM server",
             SPECULATION_LANE: "speculation", MIC_LANE: "microphone",
             SPEAKER_LANE: "speaker"}
LEGEND = ((Stage.VAD, "VAD"), (Stage.TURN, "Smart Turn"), (Stage.ASR, "ASR"), (Stage.LLM, "LLM"),
          (Stage.TTS, "TTS"), (Stage.USER_SPEECH, "your speech"), (Stage.PLAYBACK, "agent audio"),
          (Stage.BARGE_IN, "barge-in"), (Stage.SPECULATION, "reply prepared in the pause"))
LABEL_MIN_FRACTION = 0.09  # label a bar when it is at least this share of the window wide
SHORT_LABELS: dict[str, str] = {Stage.USER_SPEECH: "you", Stage.PLAYBACK: "agent", Stage.BARGE_IN: "barge-in"}


def _colour(stage: str, alpha: int = 255) -> QColor:
    colour = QColor(STAGE_COLORS.get(stage, MUTED))
    colour.setAlpha(alpha)
    return colour


class TimelineView(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.timeline: Timeline | None = None
        self.title = QLabel()
        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(170)
        self.plot.setMouseEnabled(x=True, y=False)
        self.plot.hideButtons()
        self.plot.showGrid(x=True, y=False, alpha=0.12)
        self.plot.setLabel("bottom", "ms since you stopped speaking")
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.rows = {row: len(TIMELINE_ROWS) - 1 - i for i, row in enumerate(TIMELINE_ROWS)}  # cpu on top
        left = self.plot.getAxis("left")
        left.setTicks([[(y, ROW_NAMES[row]) for row, y in self.rows.items()]])
        left.setWidth(84)
        self.plot.getViewBox().setYRange(-0.5, len(TIMELINE_ROWS) - 0.1, padding=0)  # headroom for the marker labels
        legend = " ".join(f"<span style='color:{STAGE_COLORS[s]}'>■</span>&nbsp;{name}&nbsp;&nbsp;"
                          for s, name in LEGEND)
        self.legend = QLabel(legend)
        self.legend.setStyleSheet(f"color: {MUTED};")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.plot)
        layout.addWidget(self.legend)
        self.items: list = []
        self.show_timeline(None)

    def show_timeline(self, timeline: Timeline | None) -> None:
        self.timeline = timeline
        for item in self.items:
            self.plot.removeItem(item)
        self.items = []
        if timeline is None or not timeline.bars:
            self.title.setText(f"Last turn timeline <span style='color:{MUTED}'>(no turn yet)</span>")
            return
        v2v = "" if timeline.v2v_ms is None else f" · voice-to-voice <b>{timeline.v2v_ms:,.0f} ms</b>"
        self.title.setText(f"Last turn timeline <span style='color:{MUTED}'>(reply {timeline.turn}{v2v}; "
                           f"lanes run one unit at a time)</span>")
        self._draw_bars(timeline)
        for i, (x, label) in enumerate(timeline.markers):
            side = (0.0, 0.5) if i % 2 == 0 else (1.0, 0.5)  # between the lines: right of "you stopped"
            line = pg.InfiniteLine(pos=x, angle=90, pen=pg.mkPen(TEXT, width=1, style=Qt.PenStyle.DotLine),
                                   label=label, labelOpts={"position": 0.95, "color": TEXT, "anchors": [side] * 2,
                                                           "fill": (27, 29, 35, 200)})
            self._add(line)
        lo, hi = timeline.view_ms
        self.plot.getViewBox().setXRange(lo, hi, padding=0.01)  # later playback runs off the right edge (drag it)

    def _add(self, item) -> None:
        self.plot.addItem(item)
        self.items.append(item)

    def _draw_bars(self, timeline: Timeline) -> None:
        groups: dict[tuple[str, bool], list] = defaultdict(list)
        ticks: dict[str, list] = defaultdict(list)
        width = max(1.0, timeline.span_ms[1] - timeline.span_ms[0])
        for bar in timeline.bars:
            y = self.rows[bar.row]
            if bar.thin:
                ticks[bar.stage].append((bar.start_ms, y + 0.3))
                continue
            groups[(bar.stage, bar.status == "ok")].append((bar, y))
            if bar.start_ms - bar.queued_ms > width * 0.004:  # waited in the queue
                self._add(pg.PlotCurveItem([bar.queued_ms, bar.start_ms], [y - 0.05, y - 0.05],
                                           pen=pg.mkPen(_colour(bar.stage, 110), width=1)))
            if bar.end_ms - bar.start_ms >= width * LABEL_MIN_FRACTION:
                name = SHORT_LABELS.get(bar.stage, bar.label or bar.stage)
                text = pg.TextItem(name, color="#101216", anchor=(0, 0.5))
                text.setPos(bar.start_ms + width * 0.004, y - 0.05)
                text.setZValue(10)
                self._add(text)
        for (stage, ok), bars in groups.items():
            height = 0.3 if stage == "barge_in" else 0.5
            self._add(pg.BarGraphItem(
                x0=[b.start_ms for b, _ in bars], x1=[max(b.end_ms, b.start_ms + width * 0.002) for b, _ in bars],
                y=[y - 0.05 for _, y in bars], height=height, brush=_colour(stage, 235 if ok else 90),
                pen=pg.mkPen(_colour(stage).darker(170), width=1)))
        for stage, points in ticks.items():
            self._add(pg.ScatterPlotItem([p[0] for p in points], [p[1] for p in points], symbol="|", size=8,
                                         pen=pg.mkPen(_colour(stage, 150), width=1), brush=None))
