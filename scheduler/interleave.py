"""The stream driver: turns caller-supplied produce/split/render callables into scheduler units.

``InterleavedStream`` runs one producer/renderer stream (e.g. one spoken reply) for one turn. It
knows nothing about what is produced or rendered: ``produce`` makes a bounded chunk of text,
``split`` cuts text into renderable segments, ``render`` turns a segment into media and returns its
duration, ``lead`` says how much rendered media is still unconsumed. After every unit it asks
``policy.decide`` what to start next and submits it (from the finished unit's ``on_done``), so no
thread of its own is needed. The scheduler's mode picks the policy: interleaved, sequential or
concurrent (see policy.py).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .core import CancelReport, Scheduler
from .policy import StepKind, StreamState, decide
from .units import DEVICE_LANE, CancelToken, Priority, UnitHandle, UnitResult, UnitState, WorkUnit

ProduceFn = Callable[[int, CancelToken], "tuple[str, bool] | UnitResult"]
"""``produce(max_tokens, token) -> (text_chunk, finished)``: one bounded generation step (or a ``UnitResult``
holding that pair, to add metadata to the step's span)."""
SplitFn = Callable[[str, bool, bool], "tuple[list[str], str]"]
"""``split(buffer, first, final) -> (segments, rest)``; ``first`` until a segment has been cut
(cut early, at the first clause boundary); with ``final`` everything should be consumed (a
non-blank ``rest`` is rendered as a last segment)."""
RenderFn = Callable[[str, CancelToken], "float | UnitResult"]
"""``render(segment, token) -> media_seconds`` (or a ``UnitResult`` holding them, with span metadata)."""
LeadFn = Callable[[], float]
"""``lead() -> seconds`` of rendered-but-unconsumed media; called on lane threads, must be cheap."""

log = logging.getLogger(__name__)

StreamStatus = Literal["ok", "cancelled", "error"]
MAX_EMPTY_PRODUCE_STEPS = 16  # consecutive empty, unfinished produce steps before giving up


@dataclass(frozen=True)
class StreamSummary:
    """How a stream ended. Times are ``Scheduler.clock()`` seconds."""

    status: StreamStatus
    text: str  # everything produced
    rendered: tuple[str, ...]  # segments rendered, in order
    media_s: float  # total duration returned by render
    produce_steps: int
    render_steps: int
    error: BaseException | None
    started_at: float
    first_media_at: float | None  # when the first render unit returned
    finished_at: float


class InterleavedStream:
    """Drives produce -> split -> render for one turn on a ``Scheduler``.

    Callbacks run on lane threads (or on the thread calling ``cancel``): ``on_segment_rendered(index,
    segment, media_s)`` after each render; ``on_error(exc)`` once, for the first failure;
    ``on_finished(summary)`` exactly once at the end, whatever the status. ``wait()`` returns after
    ``on_finished`` has returned, so ``on_finished`` must not wait on the stream itself.
    """

    def __init__(self, scheduler: Scheduler, turn: int, *, produce: ProduceFn, split: SplitFn,
                 render: RenderFn, lead: LeadFn | None = None,
                 produce_stage: str = "produce", render_stage: str = "render",
                 produce_priority: int = Priority.PRODUCE, render_priority: int = Priority.RENDER,
                 lane: str = DEVICE_LANE, produce_lane: str | None = None, label: str = "",
                 meta: Mapping[str, Any] | None = None,
                 on_segment_rendered: Callable[[int, str, float], None] | None = None,
                 on_finished: Callable[[StreamSummary], None] | None = None,
                 on_error: Callable[[BaseException], None] | None = None, held: bool = False) -> None:
        self.scheduler = scheduler
        self._held = held  # stop after the first rendered segment until release()
        self._handles: set[UnitHandle] = set()  # this stream's outstanding units
        self.settings = scheduler.settings
        self.turn = turn
        self._produce, self._split, self._render = produce, split, render
        self._lead = lead
        self._stages = (produce_stage, render_stage)
        self._priorities = (int(produce_priority), int(render_priority))
        self._lane = lane
        self._produce_lane = produce_lane or lane  # a producer on another machine waits on a lane of its own
        self._label = label
        self._meta = dict(meta or {})
        self._on_segment_rendered = on_segment_rendered
        self._on_finished = on_finished
        self._on_error = on_error

        self._lock = threading.Lock()
        self._done = threading.Event()
        self._started_at: float | None = None
        self._buffer = ""
        self._text_parts: list[str] = []
        self._ready: deque[tuple[int, str]] = deque()
        self._segments_emitted = 0
        self._rendered: list[str] = []
        self._media_s = 0.0
        self._produce_steps = 0
        self._render_steps = 0
        self._empty_streak = 0
        self._last_chunk_tokens = 0
        self._producer_finished = False
        self._producing = False
        self._rendering = False
        self._stop_reason: StreamStatus | None = None
        self._error: BaseException | None = None
        self._first_media_at: float | None = None
        self._summary: StreamSummary | None = None

    # -- public ------------------------------------------------------------------------------
    def start(self) -> InterleavedStream:
        """Submit the first unit; returns self. Starting twice is an error."""
        with self._lock:
            if self._started_at is not None:
                raise RuntimeError("stream already started")
            self._started_at = self.scheduler.clock()
        self._pump()
        return self

    def cancel(self, wait: bool = True, timeout: float = 1.0) -> CancelReport:
        """Stop the stream by cancelling its turn on the scheduler (see ``Scheduler.cancel_turn``)."""
        with self._lock:
            if self._stop_reason is None and self._summary is None:
                self._stop_reason = "cancelled"
        report = self.scheduler.cancel_turn(self.turn, wait=wait, timeout=timeout)
        self._pump()  # finishes the stream now if no unit of it is outstanding
        return report

    def release(self) -> None:
        """Let a held stream go on past its first segment."""
        with self._lock:
            self._held = False
        self._pump()

    def discard(self) -> None:
        """Stop this stream's own units only (its turn's other work goes on): for a stream that was prepared
        for a turn and is no longer wanted. ``on_finished`` runs with status "cancelled"."""
        with self._lock:
            if self._stop_reason is None and self._summary is None:
                self._stop_reason = "cancelled"
            handles = list(self._handles)
        for handle in handles:
            self.scheduler.cancel_unit(handle)
        self._pump()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> StreamSummary | None:
        """Block until finished; the summary, or None on timeout."""
        self._done.wait(timeout)
        return self._summary

    @property
    def summary(self) -> StreamSummary | None:
        return self._summary

    # -- the loop ------------------------------------------------------------------------------
    def _pump(self) -> None:
        lead_s, lead_error = self._read_lead()
        units: list[tuple[WorkUnit, Callable[[UnitHandle], None]]] = []
        summary = None
        with self._lock:
            if self._summary is not None:
                return
            if lead_error is not None and self._stop_reason is None:
                self._fail_locked(lead_error)
            if self._stop_reason is not None:
                if not (self._producing or self._rendering):
                    summary = self._finish_locked(self._stop_reason)
            else:
                state = StreamState(
                    producer_finished=self._producer_finished, ready_segments=len(self._ready),
                    segments_emitted=self._segments_emitted, lead_s=lead_s,
                    last_chunk_tokens=self._last_chunk_tokens, producing=self._producing,
                    rendering=self._rendering, held=self._held, segments_rendered=self._render_steps)
                for step in decide(state, self.settings):
                    if step.kind is StepKind.PRODUCE:
                        self._producing = True
                        units.append((self._produce_unit(step.max_tokens), self._on_produce_done))
                    elif step.kind is StepKind.RENDER:
                        self._rendering = True
                        index, segment = self._ready.popleft()
                        units.append((self._render_unit(index, segment), self._on_render_done))
                    else:
                        summary = self._finish_locked("ok")
        if lead_error is not None:
            self._notify_error(lead_error)
        for unit, on_done in units:
            handle = self.scheduler.submit(unit, self._tracked(on_done))
            with self._lock:
                if not handle.done():
                    self._handles.add(handle)
        if summary is not None:
            self._notify_finished(summary)

    def _read_lead(self) -> tuple[float, BaseException | None]:
        if self._lead is None:
            return 0.0, None
        try:
            return float(self._lead()), None
        except Exception as exc:
            return 0.0, exc

    def _produce_unit(self, max_tokens: int) -> WorkUnit:
        step = self._produce_steps + 1
        meta = {**self._meta, "step": step, "max_tokens": max_tokens}

        def run(token: CancelToken) -> UnitResult:
            out, extra = _unwrap(self._produce(max_tokens, token))
            if (not isinstance(out, tuple) or len(out) != 2 or not isinstance(out[0], str)):
                raise TypeError(f"produce must return (str, bool), got {out!r}")
            text, finished = out[0], bool(out[1])
            return UnitResult((text, finished, max_tokens), {**extra, "chars": len(text), "finished": finished})

        return WorkUnit(run, stage=self._stages[0], turn=self.turn, priority=self._priorities[0],
                        lane=self._produce_lane, label=f"{self._label or self._stages[0]}#{step}", meta=meta)

    def _render_unit(self, index: int, segment: str) -> WorkUnit:
        meta = {**self._meta, "segment_index": index, "chars": len(segment)}

        def run(token: CancelToken) -> UnitResult:
            out, extra = _unwrap(self._render(segment, token))
            media_s = float(out)
            return UnitResult((index, segment, media_s), {**extra, "media_s": media_s})

        return WorkUnit(run, stage=self._stages[1], turn=self.turn, priority=self._priorities[1],
                        lane=self._lane, label=f"{self._label or self._stages[1]}#{index}", meta=meta)

    # -- unit completions (lane threads) -------------------------------------------------------
    def _tracked(self, on_done: Callable[[UnitHandle], None]) -> Callable[[UnitHandle], None]:
        def done(handle: UnitHandle) -> None:
            with self._lock:
                self._handles.discard(handle)
            on_done(handle)
        return done

    def _on_produce_done(self, handle: UnitHandle) -> None:
        error = None
        with self._lock:
            self._producing = False
            if handle.state is UnitState.DONE:
                text, finished, max_tokens = handle.result()
                self._produce_steps += 1
                self._last_chunk_tokens = max_tokens
                try:
                    self._absorb_locked(text, finished)
                except Exception as exc:  # a broken splitter ends the stream, not the lane
                    error = exc
            else:
                error = self._outcome_error_locked(handle)
            if error is not None:
                self._fail_locked(error)
        if error is not None:
            self._notify_error(error)
        self._pump()

    def _on_render_done(self, handle: UnitHandle) -> None:
        rendered = error = None
        with self._lock:
            self._rendering = False
            if handle.state is UnitState.DONE:
                rendered = handle.result()
                self._render_steps += 1
                self._rendered.append(rendered[1])
                self._media_s += rendered[2]
                if self._first_media_at is None and handle.span is not None:
                    self._first_media_at = handle.span.finished_at
            else:
                error = self._outcome_error_locked(handle)
                if error is not None:
                    self._fail_locked(error)
        if error is not None:
            self._notify_error(error)
        if rendered is not None and self._on_segment_rendered is not None:
            _call_safely(self._on_segment_rendered, *rendered)
        self._pump()

    def _outcome_error_locked(self, handle: UnitHandle) -> BaseException | None:
        """For a unit that did not finish ok: its exception, or None (and mark cancelled)."""
        if handle.state is UnitState.FAILED:
            return handle.exception()
        if self._stop_reason is None:
            self._stop_reason = "cancelled"
        return None

    def _absorb_locked(self, text: str, finished: bool) -> None:
        self._text_parts.append(text)
        self._empty_streak = 0 if (text or finished) else self._empty_streak + 1
        if self._empty_streak >= MAX_EMPTY_PRODUCE_STEPS:
            raise RuntimeError(f"produce returned no text {self._empty_streak} times without finishing")
        self._buffer += text
        segments, rest = self._split(self._buffer, self._segments_emitted == 0, finished)
        if not isinstance(rest, str):
            raise TypeError(f"split must return (list[str], str), got rest={rest!r}")
        segments = list(segments)
        if finished and rest.strip():
            segments.append(rest)
            rest = ""
        for segment in segments:
            if not isinstance(segment, str):
                raise TypeError(f"split returned a non-string segment {segment!r}")
            if segment.strip():
                self._ready.append((self._segments_emitted, segment))
                self._segments_emitted += 1
        self._buffer = "" if finished else rest
        self._producer_finished = finished

    # -- endings ---------------------------------------------------------------------------------
    def _fail_locked(self, error: BaseException) -> None:
        if self._stop_reason is None:
            self._stop_reason = "error"
            self._error = error

    def _finish_locked(self, status: StreamStatus) -> StreamSummary:
        self._summary = StreamSummary(
            status=status, text="".join(self._text_parts), rendered=tuple(self._rendered),
            media_s=self._media_s, produce_steps=self._produce_steps,
            render_steps=self._render_steps, error=self._error if status == "error" else None,
            started_at=self._started_at if self._started_at is not None else self.scheduler.clock(),
            first_media_at=self._first_media_at, finished_at=self.scheduler.clock())
        return self._summary

    def _notify_error(self, error: BaseException) -> None:
        if self._on_error is not None and self._error is error:
            _call_safely(self._on_error, error)

    def _notify_finished(self, summary: StreamSummary) -> None:
        if self._on_finished is not None:
            _call_safely(self._on_finished, summary)
        self._done.set()


def _call_safely(callback: Callable[..., Any], *args: Any) -> None:
    """Run a caller's callback; log (never propagate) its failure, so the stream keeps going."""
    try:
        callback(*args)
    except Exception:
        log.exception("stream callback %r failed", callback)


def _unwrap(out: Any) -> tuple[Any, dict]:
    """produce/render may return a UnitResult to add metadata to their span."""
    return (out.value, dict(out.meta)) if isinstance(out, UnitResult) else (out, {})
