"""The ``Scheduler``: routes submitted work units to lanes, cancels turns, and records spans.

Lanes: ``device`` (owns the compute pool: the GPU, or the cores the heavy models use) and ``cpu``
(light models, one thread). In ``Mode.CONCURRENT`` a device unit goes instead to a lane of its own
stage, ``device/<stage>``, created on first use, so stages compete for the device as they do in
most peer systems. One lock guards every queue, so submit, start and cancel are atomic together.

Thread notes: ``on_done`` runs on the lane thread for units that ran, and on the calling thread for
units dropped by ``cancel_turn``/``cancel_unit``/``close`` or rejected by ``submit``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .lanes import Lane, finish_handle
from .settings import Mode, SchedulerSettings
from .spans import SpanLog
from .units import CPU_LANE, DEVICE_LANE, NO_TURN, REMOTE_LANE, OnDone, UnitHandle, WorkUnit


@dataclass(frozen=True)
class CancelReport:
    """What a cancel did.

    ``dropped``: queued units removed (now cancelled). ``running``: running units whose token was
    set. ``running_stopped``: True when none of those is still running as the call returns (True
    when there were none). ``elapsed_ms``: how long the call took, waiting included.
    """

    dropped: int
    running: int
    running_stopped: bool
    elapsed_ms: float


@dataclass(frozen=True)
class LaneSnapshot:
    """A lane's state at one instant (for a UI or a debug dump)."""

    name: str
    queued: int
    running_stage: str | None
    running_turn: int | None
    running_label: str | None
    running_since: float | None


class Scheduler:
    """Runs ``WorkUnit``s on lanes by priority; see the module docstring and docs/scheduler.md.

    Turn cancellation is sticky: after ``cancel_turn(t)``, units of turn ``t`` still queued are
    dropped, and units of turn ``t`` submitted later are rejected at once (their handle is already
    cancelled, with ``span.meta["cancel"] == "rejected"``). Use a fresh, increasing turn id per turn.
    """

    clock: Callable[[], float] = staticmethod(time.perf_counter)
    """The clock of every span time: ``time.perf_counter`` seconds."""

    def __init__(self, settings: SchedulerSettings | None = None, *,
                 span_log: SpanLog | None = None, device_barrier: Callable[[], None] | None = None) -> None:
        """``device_barrier`` (optional) returns once all device work launched so far has ended (for CUDA,
        a synchronize); every device-lane unit's span then ends when its device work has ended, not when
        its kernels were launched."""
        self.settings = settings if settings is not None else SchedulerSettings()
        self.spans = span_log if span_log is not None else SpanLog(self.settings.span_capacity)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._lanes: dict[str, Lane] = {}
        self._cancelled_turns: set[int] = set()
        self._in_flight = 0
        self._ids = itertools.count(1)
        self._closed = False
        self._device_barrier = device_barrier
        with self._lock:
            for name in (DEVICE_LANE, CPU_LANE, REMOTE_LANE):
                self._add_lane_locked(name)

    @property
    def mode(self) -> Mode:
        return self.settings.mode

    # -- submitting ----------------------------------------------------------------------------
    def lane_for(self, unit: WorkUnit) -> str:
        """The name of the lane ``unit`` runs on under the current mode."""
        if self.settings.mode is Mode.CONCURRENT and unit.lane == DEVICE_LANE:
            return f"{DEVICE_LANE}/{unit.stage}"
        return unit.lane

    def submit(self, unit: WorkUnit, on_done: OnDone | None = None) -> UnitHandle:
        """Queue ``unit`` on its lane; ``on_done(handle)`` is called once it is terminal.

        A unit of a cancelled turn, or any unit after ``close()``, is not queued: the returned
        handle is already cancelled and ``on_done`` has already run. Unknown lanes: ``ValueError``.
        """
        if not isinstance(unit, WorkUnit):
            raise TypeError(f"submit() takes a WorkUnit, got {type(unit).__name__}")
        lane_name = self.lane_for(unit)
        with self._lock:
            reason = "closed" if self._closed else "rejected" if unit.turn in self._cancelled_turns else None
            lane = self._lanes.get(lane_name)
            if lane is None:
                if lane_name.startswith(DEVICE_LANE + "/") and not self._closed:
                    lane = self._add_lane_locked(lane_name)
                elif reason is None:
                    raise ValueError(f"unknown lane {unit.lane!r}; lanes: {', '.join(self._lanes)}")
            handle = UnitHandle(unit, next(self._ids), lane_name, self.clock(), on_done,
                                canceller=self.cancel_unit)
            if reason is None and lane is not None:
                self._in_flight += 1
                lane.push_locked(handle)
                return handle
        finish_handle(handle, "cancelled", finished_at=self.clock(), span_log=self.spans,
                      extra_meta={"cancel": reason})
        return handle

    # -- cancelling ------------------------------------------------------------------------------
    def cancel_turn(self, turn: int, wait: bool = True, timeout: float = 1.0) -> CancelReport:
        """Cancel every unit of ``turn``: drop the queued ones, signal the running ones.

        After this returns, no unit of ``turn`` will start (later submits are rejected). With
        ``wait``, blocks up to ``timeout`` seconds until the signalled units have returned, except
        a unit running on the calling thread (so it is safe from ``on_done`` or from a unit).
        Calling it again for the same turn is harmless.
        """
        if turn == NO_TURN:
            raise ValueError("NO_TURN cannot be cancelled as a turn; cancel its units one by one")
        started = time.perf_counter()
        with self._lock:
            self._cancelled_turns.add(turn)
            dropped, running = self._collect_locked(lambda h: h.unit.turn == turn)
        return self._settle_cancel(dropped, running, "queued", wait, timeout, started)

    def cancel_unit(self, handle: UnitHandle, wait: bool = False, timeout: float = 1.0) -> CancelReport:
        """Cancel one unit (queued: dropped; running: token set). Its turn is not marked cancelled."""
        started = time.perf_counter()
        with self._lock:
            dropped, running = self._collect_locked(lambda h: h is handle, lanes=[handle.lane])
        return self._settle_cancel(dropped, running, "queued", wait, timeout, started)

    def is_turn_cancelled(self, turn: int) -> bool:
        with self._lock:
            return turn in self._cancelled_turns

    # -- observing ---------------------------------------------------------------------------------
    def lane_names(self) -> list[str]:
        with self._lock:
            return list(self._lanes)

    def lane_status(self) -> list[LaneSnapshot]:
        with self._lock:
            out = []
            for name, lane in self._lanes.items():
                cur = lane.running_locked()
                out.append(LaneSnapshot(
                    name=name, queued=lane.queued_locked(),
                    running_stage=cur.unit.stage if cur else None,
                    running_turn=cur.unit.turn if cur else None,
                    running_label=cur.unit.label if cur else None,
                    running_since=cur.started_at if cur else None))
            return out

    def pending(self) -> int:
        """Units accepted and not yet settled (queued, running, or in their ``on_done``)."""
        with self._lock:
            return self._in_flight

    def outstanding(self, turn: int | None = None) -> list[UnitHandle]:
        """The units queued or running now (of ``turn`` only, when given): running ones first, then each
        lane's queue in run order. A cancelled turn must have none once its running unit has stopped."""
        with self._lock:
            lanes = list(self._lanes.values())
            running = [h for h in (lane.running_locked() for lane in lanes) if h is not None]
            handles = running + [h for lane in lanes for h in lane.queued_handles_locked()]
        return [h for h in handles if turn is None or h.unit.turn == turn]

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no unit is queued, running or in its ``on_done``; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    # -- shutting down -------------------------------------------------------------------------
    def close(self, timeout: float = 2.0) -> bool:
        """Cancel everything queued, signal running units, stop the lane threads.

        Returns True if every lane thread ended within ``timeout`` (lane threads are daemons, so a
        stuck unit cannot keep the process alive). Later submits are rejected. Idempotent.
        """
        started = time.perf_counter()
        with self._lock:
            self._closed = True
            dropped, _running = self._collect_locked(lambda h: True)
            lanes = list(self._lanes.values())
            for lane in lanes:
                lane.close_locked()
        self._settle_cancel(dropped, [], "closed", False, 0.0, started)
        deadline = time.perf_counter() + timeout
        ok = True
        for lane in lanes:
            if lane.is_own_thread():
                continue
            ok = lane.join(max(0.0, deadline - time.perf_counter())) and ok
        return ok

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------------
    def _add_lane_locked(self, name: str) -> Lane:
        on_device = name == DEVICE_LANE or name.startswith(DEVICE_LANE + "/")
        lane = Lane(name, self._lock, self.spans, self.clock, self._settled,
                    barrier=self._device_barrier if on_device else None)
        self._lanes[name] = lane
        lane.start()
        return lane

    def _collect_locked(self, match: Callable[[UnitHandle], bool], lanes: list[str] | None = None
                        ) -> tuple[list[UnitHandle], list[tuple[Lane, UnitHandle]]]:
        dropped: list[UnitHandle] = []
        running: list[tuple[Lane, UnitHandle]] = []
        for name in (lanes if lanes is not None else list(self._lanes)):
            lane = self._lanes.get(name)
            if lane is None:
                continue
            dropped.extend(lane.drop_locked(match))
            current = lane.running_locked()
            if current is not None and match(current):
                current.token.cancel()
                running.append((lane, current))
        return dropped, running

    def _settle_cancel(self, dropped: list[UnitHandle], running: list[tuple[Lane, UnitHandle]],
                       reason: str, wait: bool, timeout: float, started: float) -> CancelReport:
        now = self.clock()
        for handle in dropped:
            finish_handle(handle, "cancelled", finished_at=now, span_log=self.spans,
                          extra_meta={"cancel": reason})
            self._settled(handle)
        if wait and running:
            deadline = time.perf_counter() + max(0.0, timeout)
            for lane, handle in running:
                if not lane.is_own_thread():
                    handle.wait(max(0.0, deadline - time.perf_counter()))
        stopped = all(handle.done() for _lane, handle in running)
        return CancelReport(dropped=len(dropped), running=len(running), running_stopped=stopped,
                            elapsed_ms=(time.perf_counter() - started) * 1000.0)

    def _settled(self, _handle: UnitHandle) -> None:
        with self._idle:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.notify_all()
