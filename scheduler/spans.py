"""Spans: the record of what ran where and when, and the bounded, thread-safe log that keeps them.

Every unit the scheduler accepts or rejects ends as exactly one ``Span``. All times are seconds on
the ``time.perf_counter()`` clock (``Scheduler.clock()``), comparable with any other
``perf_counter`` reading in the same process. Metrics and the UI timeline are built from spans alone.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

log = logging.getLogger(__name__)

SpanStatus = Literal["ok", "error", "cancelled"]
SpanCallback = Callable[["Span"], None]

DEFAULT_SPAN_CAPACITY = 20_000


@dataclass(frozen=True)
class Span:
    """One finished unit.

    ``started_at`` is None for a unit that never started (dropped from its queue, or rejected at
    submit). For cancelled units ``meta["cancel"]`` says how: "queued" (dropped from the queue),
    "running" (its token was set while it ran), "rejected" (submitted for a cancelled turn) or
    "closed" (scheduler shut down).
    """

    unit_id: int
    lane: str
    stage: str
    turn: int
    label: str
    queued_at: float
    started_at: float | None
    finished_at: float
    status: SpanStatus
    error: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))

    @property
    def wait_s(self) -> float:
        """Seconds spent queued (until start, or until dropped)."""
        end = self.started_at if self.started_at is not None else self.finished_at
        return end - self.queued_at

    @property
    def run_s(self) -> float:
        """Seconds spent running (0 for a unit that never started)."""
        return 0.0 if self.started_at is None else self.finished_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (meta values are passed through as they are)."""
        return {
            "unit_id": self.unit_id, "lane": self.lane, "stage": self.stage, "turn": self.turn,
            "label": self.label, "queued_at": self.queued_at, "started_at": self.started_at,
            "finished_at": self.finished_at, "status": self.status, "error": self.error,
            "meta": dict(self.meta),
        }


class SpanLog:
    """A ring buffer of the most recent ``capacity`` spans, with subscribers.

    ``append`` calls subscribers synchronously on the appending thread (a lane thread), outside
    the log's lock: subscribers must be quick (e.g. post to a queue or a Qt signal). A subscriber
    that raises is logged and otherwise ignored.
    """

    def __init__(self, capacity: int = DEFAULT_SPAN_CAPACITY) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"SpanLog capacity must be an int >= 1, got {capacity!r}")
        self._lock = threading.Lock()
        self._spans: deque[Span] = deque(maxlen=capacity)
        self._subscribers: list[SpanCallback] = []
        self._total = 0

    @property
    def capacity(self) -> int:
        return self._spans.maxlen or 0

    @property
    def total_recorded(self) -> int:
        """Spans ever appended, including those since evicted."""
        with self._lock:
            return self._total

    @property
    def evicted(self) -> int:
        """Spans dropped from the front because the buffer was full."""
        with self._lock:
            return self._total - len(self._spans)

    def __len__(self) -> int:
        with self._lock:
            return len(self._spans)

    def append(self, span: Span) -> None:
        with self._lock:
            self._spans.append(span)
            self._total += 1
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(span)
            except Exception:  # a broken observer must not break the lanes
                log.exception("span subscriber %r failed", callback)

    def snapshot(self) -> list[Span]:
        """The retained spans, oldest first."""
        with self._lock:
            return list(self._spans)

    def for_turn(self, turn: int) -> list[Span]:
        """The retained spans of one turn, in the order they finished."""
        with self._lock:
            return [s for s in self._spans if s.turn == turn]

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()

    def subscribe(self, callback: SpanCallback) -> Callable[[], None]:
        """Call ``callback(span)`` for each span appended from now on; returns an unsubscribe function."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                try:
                    self._subscribers.remove(callback)
                except ValueError:
                    pass  # already unsubscribed

        return unsubscribe
