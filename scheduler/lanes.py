"""A lane: one worker thread and one priority queue, running one work unit at a time.

Lanes share the scheduler's lock (each has its own ``Condition`` on it), so that submitting,
starting a unit and cancelling a turn are atomic with respect to each other across all lanes.
Methods ending in ``_locked`` must be called with that lock held.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

from .spans import Span, SpanLog
from .units import UnitCancelledError, UnitHandle, UnitResult, UnitState

log = logging.getLogger(__name__)

Clock = Callable[[], float]


def finish_handle(handle: UnitHandle, status: str, *, value: Any = None,
                  error: BaseException | None = None, finished_at: float,
                  span_log: SpanLog, extra_meta: dict[str, Any] | None = None) -> None:
    """Record the span, make the handle terminal, then call its ``on_done``. Exactly once per handle.

    Runs without the scheduler lock held (span subscribers and ``on_done`` are caller code).
    """
    unit = handle.unit
    meta = dict(unit.meta)
    if isinstance(value, UnitResult):
        meta.update(value.meta)
        value = value.value
    if extra_meta:
        meta.update(extra_meta)
    message = None if error is None else f"{type(error).__name__}: {error}"
    span = Span(unit_id=handle.unit_id, lane=handle.lane, stage=unit.stage, turn=unit.turn,
                label=unit.label, queued_at=handle.queued_at, started_at=handle.started_at,
                finished_at=finished_at, status=status,  # type: ignore[arg-type]
                error=message if status == "error" else None, meta=meta)
    try:
        span_log.append(span)
    finally:
        state = {"ok": UnitState.DONE, "error": UnitState.FAILED}.get(status, UnitState.CANCELLED)
        handle._set_terminal(state, value if state is UnitState.DONE else None,
                             error if state is UnitState.FAILED else None, span)
        callback = handle._on_done
        if callback is not None:
            try:
                callback(handle)
            except Exception:  # a failing callback must never kill a lane
                log.exception("on_done callback of unit %s (%s) failed", handle.unit_id, unit.stage)


class Lane:
    """One worker thread draining a priority queue (lower priority first, FIFO among equals)."""

    def __init__(self, name: str, lock: threading.Lock, span_log: SpanLog, clock: Clock,
                 on_settled: Callable[[UnitHandle], None], barrier: Callable[[], None] | None = None) -> None:
        self.name = name
        self._barrier = barrier  # waits until the device work a unit launched has ended (see _execute)
        self._cond = threading.Condition(lock)
        self._span_log = span_log
        self._clock = clock
        self._on_settled = on_settled  # told after a unit's on_done returned
        self._heap: list[tuple[int, int, UnitHandle]] = []
        self._seq = itertools.count()
        self._current: UnitHandle | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"lane-{name}", daemon=True)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def is_own_thread(self) -> bool:
        return threading.get_ident() == self._thread.ident

    # -- under the shared lock -------------------------------------------------------------
    def push_locked(self, handle: UnitHandle) -> None:
        heapq.heappush(self._heap, (handle.unit.priority, next(self._seq), handle))
        self._cond.notify()

    def drop_locked(self, predicate: Callable[[UnitHandle], bool]) -> list[UnitHandle]:
        """Remove and return the queued handles matching ``predicate`` (in queue order)."""
        dropped = [e for e in self._heap if predicate(e[2])]
        if dropped:
            self._heap = [e for e in self._heap if not predicate(e[2])]
            heapq.heapify(self._heap)
        return [e[2] for e in sorted(dropped)]

    def _waiting_priority(self) -> float:
        """The priority of the most urgent queued unit (inf when none); read without the lock: a hint."""
        try:
            return self._heap[0][0]
        except IndexError:
            return float("inf")

    def running_locked(self) -> UnitHandle | None:
        return self._current

    def queued_locked(self) -> int:
        return len(self._heap)

    def queued_handles_locked(self) -> list[UnitHandle]:
        """The queued handles, in the order they would run."""
        return [e[2] for e in sorted(self._heap)]

    def close_locked(self) -> None:
        self._closing = True
        self._cond.notify_all()

    # -- the worker ----------------------------------------------------------------------------
    def _next_locked(self) -> UnitHandle | None:
        while not self._heap and not self._closing:
            self._cond.wait()
        if not self._heap:
            return None
        handle = heapq.heappop(self._heap)[2]
        priority = handle.unit.priority
        handle.token._more_urgent = lambda: self._waiting_priority() < priority
        handle.started_at = self._clock()
        handle._state = UnitState.RUNNING
        self._current = handle
        return handle

    def _run(self) -> None:
        while True:
            with self._cond:
                handle = self._next_locked()
            if handle is None:
                return
            self._execute(handle)
            self._on_settled(handle)

    def _execute(self, handle: UnitHandle) -> None:
        value: Any = None
        error: BaseException | None = None
        stopped_itself = False
        try:
            value = handle.unit.fn(handle.token)
        except UnitCancelledError:
            stopped_itself = True  # the unit stopped at a step boundary
        except BaseException as exc:  # captured into the handle; the lane lives on
            error = exc
        sync: dict[str, Any] = {}
        if self._barrier is not None:
            # Work launched asynchronously (CUDA kernels) has not ended when fn returns: the unit's span and
            # the lane are the unit's until it has, so the next unit never overlaps it and spans measure device
            # time. An asynchronous device error surfaces here and is the unit's error.
            launched = self._clock()
            try:
                self._barrier()
            except BaseException as exc:
                error = error or exc
            sync = {"sync_ms": round((self._clock() - launched) * 1000.0, 3)}
        finished_at = self._clock()
        with self._cond:
            self._current = None
        if error is not None:
            status = "error"
        elif stopped_itself or handle.token.cancelled:
            status = "cancelled"
        else:
            status = "ok"
        extra = {**sync, "cancel": "running"} if status == "cancelled" else sync or None
        finish_handle(handle, status, value=value, error=error, finished_at=finished_at,
                      span_log=self._span_log, extra_meta=extra)
