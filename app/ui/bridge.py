"""The one door between the conversation's threads and the Qt main thread.

`UiBridge.on_session_item` (a session observer), `on_turn_record` (a TurnCollector listener) and `on_span` (a SpanLog
subscriber) are called on the session, lane and audio threads. They update the view models and emit Qt signals;
signals emitted from another thread reach the widgets queued on the main thread, so widgets never touch the session.
Turn records are published from the main thread, a moment after the turn closed, so that the spans recorded in
the same instant (the playback span, the last TTS unit) are on the timeline."""
from __future__ import annotations

import threading
from collections import deque

from PyQt6.QtCore import QObject, QTimer, pyqtSignal, pyqtSlot

from app.conversation.state import Phase
from app.metrics.turns import TurnRecord
from app.ui.view_models import LatencyModel, TranscriptModel, build_timeline, state_label
from scheduler import Span

SPAN_MEMORY = 6000  # spans kept for the timeline (VAD alone records ~31 a second)
LATE_SPANS_MS = 400  # redraw the timeline once more after this, for spans recorded just after the turn closed


class UiBridge(QObject):
    state_changed = pyqtSignal(str, str)  # key, text: listening / hearing / thinking / speaking (+ loading, no-audio)
    transcript_changed = pyqtSignal(object)  # tuple[TranscriptEntry, ...]
    latency_changed = pyqtSignal(object)  # LatencySnapshot
    timeline_changed = pyqtSignal(object)  # Timeline
    progress = pyqtSignal(str)  # model loading step
    loading = pyqtSignal(bool)
    ready = pyqtSignal(dict)  # engine names, once a session runs
    error = pyqtSignal(str)  # a settings change or a model load failed (the old engines stay)
    audio_problem = pyqtSignal(str)  # no device, device gone; empty string = solved
    _record_closed = pyqtSignal(object)

    def __init__(self) -> None:
        super().__init__()
        self.transcript = TranscriptModel()
        self.latency = LatencyModel()
        self.records: list[TurnRecord] = []
        self.last_timeline = None
        self._spans: deque[Span] = deque(maxlen=SPAN_MEMORY)
        self._lock = threading.Lock()
        self._record_closed.connect(self._publish)

    # ---- called on the conversation's threads ---------------------------------------------------------------
    def on_session_item(self, item: object) -> None:
        """Session observer: every event, action and phase change."""
        if isinstance(item, Phase):
            self.state_changed.emit(*state_label(item))
        elif self.transcript.update(item):
            self.transcript_changed.emit(self.transcript.snapshot())

    def on_span(self, span: Span) -> None:
        """SpanLog subscriber: keep the span for the timeline (quick: a lane thread calls this)."""
        with self._lock:
            self._spans.append(span)

    def on_turn_record(self, record: TurnRecord) -> None:
        """TurnCollector listener: a reply ended; its figures are published on the main thread."""
        self._record_closed.emit(record)

    def spans(self) -> list[Span]:
        with self._lock:
            return list(self._spans)

    # ---- main thread ---------------------------------------------------------------------------------------
    @pyqtSlot(object)
    def _publish(self, record: TurnRecord) -> None:
        self.records.append(record)
        self.latency_changed.emit(self.latency.add(record))
        self._publish_timeline(record)
        QTimer.singleShot(LATE_SPANS_MS, lambda: self._refresh_timeline(record))

    def _refresh_timeline(self, record: TurnRecord) -> None:
        if self.records and self.records[-1] is record:
            self._publish_timeline(record)

    def _publish_timeline(self, record: TurnRecord) -> None:
        self.last_timeline = build_timeline(self.spans(), record)
        self.timeline_changed.emit(self.last_timeline)
