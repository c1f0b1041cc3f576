"""The Cadence window: state indicator, microphone level meter, mute, the conversation transcript (interrupted replies
marked where they were cut), the live latency graphs and the last turn's timeline, and a status bar with model-loading
progress. It renders what the bridge emits; the only calls back are start/apply/mute/restart-audio on the controller."""
from __future__ import annotations

import html
from typing import Protocol

from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtGui import QCloseEvent
from PyQt6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.audio.echo_cancel import EchoStats
from app.config import Config
from app.ui.bridge import UiBridge
from app.ui.latency_graphs import LatencyGraphs
from app.ui.theme import ACCENT, ERROR, MUTED, PANEL, STATE_COLORS, TEXT
from app.ui.timeline import TimelineView
from app.ui.view_models import TranscriptEntry, echo_text, meter_percent

METER_INTERVAL_MS = 66


class Controls(Protocol):
    """What the window may ask of the conversation (AppController)."""

    cfg: Config

    def apply(self, cfg: Config) -> bool: ...
    def set_muted(self, muted: bool) -> None: ...
    def mic_level(self) -> float: ...
    def echo_stats(self) -> EchoStats | None: ...
    def restart_audio(self) -> None: ...
    def shutdown(self) -> None: ...


def entry_html(entry: TranscriptEntry) -> str:
    text = html.escape(entry.text)
    if entry.role == "user":
        return f"<p><b style='color:{ACCENT}'>You</b><br>{text}</p>"
    if entry.role == "notice":
        return f"<p style='color:{MUTED}'><i>⚠ {text}</i></p>"
    body = text or f"<span style='color:{MUTED}'>…</span>"
    if entry.interrupted:
        cut = f" <b style='color:{ERROR}'>⟂ interrupted</b>"
        rest = f" <s style='color:{MUTED}'>{html.escape(entry.unheard)}</s>" if entry.unheard else ""
        body = f"{text}{cut}{rest}"
    return f"<p><b style='color:#7bd88f'>Cadence</b><br>{body}</p>"


class MainWindow(QMainWindow):
    def __init__(self, bridge: UiBridge, controls: Controls | None = None):
        super().__init__()
        self.bridge, self.controls = bridge, controls
        self.setWindowTitle("Cadence")
        self.resize(1280, 800)

        self.state = QLabel()
        self.state.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.state.setMinimumWidth(150)
        self.state_key = ""
        self.meter = QProgressBar()
        self.meter.setRange(0, 100)
        self.meter.setTextVisible(False)
        self.meter.setFixedSize(180, 12)
        self.meter.setStyleSheet(f"QProgressBar {{ background: {PANEL}; border: 1px solid #3a3f4b; "
                                 "border-radius: 5px; }"
                                 "QProgressBar::chunk { background: #2f9e5b; border-radius: 4px; }")
        self.mute = QPushButton("Mute")
        self.mute.setCheckable(True)
        self.mute.toggled.connect(self._on_mute)
        self.settings_button = QPushButton("Settings…")
        self.settings_button.clicked.connect(self.open_settings)
        self.restart_button = QPushButton("Restart audio")
        self.restart_button.clicked.connect(lambda: self.controls and self.controls.restart_audio())
        self.restart_button.hide()
        top = QHBoxLayout()
        top.addWidget(self.state)
        top.addSpacing(12)
        top.addWidget(QLabel("mic"))
        top.addWidget(self.meter)
        top.addWidget(self.mute)
        top.addStretch(1)
        top.addWidget(self.restart_button)
        top.addWidget(self.settings_button)

        self.audio_banner = self._banner(ERROR)
        self.error_banner = self._banner("#c98a1b")
        self.transcript = QTextBrowser()
        self.transcript.setOpenLinks(False)
        self.transcript.setStyleSheet(f"QTextBrowser {{ font-size: 14px; color: {TEXT}; padding: 6px; }}")
        self.entries: tuple[TranscriptEntry, ...] = ()
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(QLabel("Conversation"))
        left_layout.addWidget(self.transcript)

        self.graphs = LatencyGraphs()
        self.timeline = TimelineView()
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.graphs)
        right.addWidget(self.timeline)
        right.setSizes([470, 250])
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setSizes([400, 880])

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(10, 8, 10, 4)
        layout.addLayout(top)
        layout.addWidget(self.audio_banner)
        layout.addWidget(self.error_banner)
        layout.addWidget(split, 1)
        self.setCentralWidget(central)

        self.progress_label = QLabel()
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)  # indeterminate
        self.busy.setFixedWidth(120)
        self.busy.hide()
        self.engines_label = QLabel()
        self.engines_label.setStyleSheet(f"color: {MUTED};")
        status = self.statusBar()
        assert status is not None  # a QMainWindow makes its status bar on first use
        status.addWidget(self.busy)
        status.addWidget(self.progress_label, 1)
        self.echo_label = QLabel()  # diagnostics: the echo canceller's delay estimate and echo reduction
        self.echo_label.setStyleSheet(f"color: {MUTED};")
        status.addPermanentWidget(self.echo_label)
        status.addPermanentWidget(self.engines_label)
        self._polls = 0

        bridge.state_changed.connect(self.show_state)
        bridge.transcript_changed.connect(self.show_transcript)
        bridge.latency_changed.connect(self.graphs.show_snapshot)
        bridge.timeline_changed.connect(self.timeline.show_timeline)
        bridge.progress.connect(self.progress_label.setText)
        bridge.loading.connect(self.show_loading)
        bridge.ready.connect(self.show_engines)
        bridge.error.connect(self.show_error)
        bridge.audio_problem.connect(self.show_audio_problem)
        self.show_state("loading", "Starting")
        self._meter_timer = QTimer(self)
        self._meter_timer.timeout.connect(self._poll_meter)
        self._meter_timer.start(METER_INTERVAL_MS)

    @staticmethod
    def _banner(colour: str) -> QLabel:
        label = QLabel()
        label.setWordWrap(True)
        label.setStyleSheet(f"QLabel {{ background: {colour}; color: white; padding: 6px 10px; border-radius: 5px; }}")
        label.hide()
        return label

    # ---- slots: render what the bridge says -------------------------------------------------------------------
    def show_state(self, key: str, text: str) -> None:
        self.state_key = key
        self.state.setText(text)
        self.state.setStyleSheet(f"QLabel {{ background: {STATE_COLORS.get(key, PANEL)}; color: white; "
                                 "font-size: 15px; font-weight: bold; padding: 6px 16px; border-radius: 14px; }")

    def show_transcript(self, entries: tuple[TranscriptEntry, ...]) -> None:
        self.entries = entries
        self.transcript.setHtml("".join(entry_html(e) for e in entries))
        bar = self.transcript.verticalScrollBar()
        if bar is not None:
            bar.setValue(bar.maximum())

    def show_loading(self, loading: bool) -> None:
        self.busy.setVisible(loading)
        self.settings_button.setEnabled(not loading)
        if loading:
            self.error_banner.hide()

    def show_engines(self, names: dict) -> None:
        self.engines_label.setText("  ·  ".join(f"{k} {v}" for k, v in names.items()))

    def show_error(self, message: str) -> None:
        self.error_banner.setText(message)
        self.error_banner.setVisible(bool(message))
        self.progress_label.setText("")

    def show_audio_problem(self, message: str) -> None:
        self.audio_banner.setText(message)
        self.audio_banner.setVisible(bool(message))
        self.restart_button.setVisible(bool(message))

    # ---- user actions ------------------------------------------------------------------------------------------
    def _on_mute(self, muted: bool) -> None:
        self.mute.setText("Unmute" if muted else "Mute")
        if self.controls is not None:
            self.controls.set_muted(muted)

    def _poll_meter(self) -> None:
        level = self.controls.mic_level() if self.controls is not None else 0.0
        self.meter.setValue(meter_percent(level))
        self._polls += 1
        if self.controls is not None and self._polls % 15 == 1:  # about once a second
            self.echo_label.setText(echo_text(self.controls.echo_stats(), self.controls.cfg.audio))

    def open_settings(self):
        from app.ui.settings_dialog import SettingsDialog

        if self.controls is None:
            return None
        dialog = SettingsDialog(self.controls.cfg, self)
        dialog.applied.connect(self.controls.apply)
        dialog.show()
        return dialog

    def closeEvent(self, event: QCloseEvent) -> None:
        self._meter_timer.stop()
        if self.controls is not None:
            self.controls.shutdown()
        super().closeEvent(event)
