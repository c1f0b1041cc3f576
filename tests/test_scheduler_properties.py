"""Property-based tests (hypothesis) of the scheduler's ordering and cancellation invariants."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler import Mode, Scheduler, SchedulerSettings, UnitState, WorkUnit

pytestmark = pytest.mark.timeout(60)

LANES = ("device", "cpu")
STATUS_OF = {UnitState.DONE: "ok", UnitState.FAILED: "error", UnitState.CANCELLED: "cancelled"}
quick = settings(max_examples=40, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])


def hold_lanes(s: Scheduler, lanes=LANES) -> threading.Event:
    """Block the given lanes until the returned event is set."""
    gate = threading.Event()
    started = []
    for lane in lanes:
        ev = threading.Event()
        started.append(ev)
        s.submit(WorkUnit(lambda t, ev=ev: (ev.set(), gate.wait(5)), "gate", 10_000, -1, lane=lane))
    for ev in started:
        assert ev.wait(5)
    return gate


@quick
@given(st.lists(st.integers(-3, 3), min_size=1, max_size=30))
def test_one_lane_runs_units_by_priority_then_fifo(priorities):
    with Scheduler() as s:
        gate = hold_lanes(s, ["device"])
        order: list[int] = []
        for i, p in enumerate(priorities):
            s.submit(WorkUnit(lambda t, i=i: order.append(i), "s", 1, p))
        gate.set()
        assert s.wait_idle(5)
    assert order == sorted(range(len(priorities)), key=lambda i: (priorities[i], i))


@quick
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(LANES), st.integers(0, 3)),
                min_size=1, max_size=25),
       st.sets(st.integers(0, 3)))
def test_cancelled_turns_never_run_and_the_rest_run_in_order(units, cancelled):
    with Scheduler() as s:
        gate = hold_lanes(s)
        ran: dict[str, list[int]] = defaultdict(list)
        handles = [s.submit(WorkUnit(lambda t, i=i, lane=lane: ran[lane].append(i), "s", turn, prio,
                                     lane=lane))
                   for i, (turn, lane, prio) in enumerate(units)]
        for turn in cancelled:
            report = s.cancel_turn(turn)
            assert report.dropped == sum(1 for u in units if u[0] == turn)
        gate.set()
        assert s.wait_idle(5)
    for lane in LANES:
        expected = sorted((i for i, (turn, ln, _p) in enumerate(units) if ln == lane and turn not in cancelled),
                          key=lambda i: (units[i][2], i))
        assert ran[lane] == expected
    for h, (turn, _lane, _prio) in zip(handles, units):
        assert h.cancelled() == (turn in cancelled)


@dataclass(frozen=True)
class Submit:
    turn: int
    lane: str
    priority: int
    kind: str  # quick | sleep | raise | poll | cancel_in_on_done


@dataclass(frozen=True)
class Cancel:
    turn: int
    wait: bool


@dataclass(frozen=True)
class CancelUnit:
    index: int


@dataclass(frozen=True)
class Pause:
    seconds: float


op_st = st.one_of(
    st.builds(Submit, st.integers(0, 3), st.sampled_from(LANES), st.integers(0, 3),
              st.sampled_from(["quick", "sleep", "raise", "poll", "cancel_in_on_done"])),
    st.builds(Cancel, st.integers(0, 3), st.booleans()),
    st.builds(CancelUnit, st.integers(0, 30)),
    st.builds(Pause, st.sampled_from([0.0, 0.0005, 0.002])),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op_st, min_size=1, max_size=30), st.sampled_from(list(Mode)))
def test_random_submit_and_cancel_programs_keep_every_invariant(ops, mode):
    s = Scheduler(SchedulerSettings(mode=mode))
    lock = threading.Lock()
    active: dict[str, int] = defaultdict(int)
    overlaps: list[str] = []
    done_calls: dict[int, int] = defaultdict(int)
    cancel_returned: dict[int, float] = {}
    handles = []
    kinds = []

    def body(kind: str, lane: str):
        def run(token):
            with lock:
                active[lane] += 1
                if active[lane] > 1:
                    overlaps.append(lane)
            try:
                if kind == "sleep":
                    time.sleep(0.001)
                elif kind == "raise":
                    raise ValueError("unit failed")
                elif kind == "poll":
                    for _ in range(20):
                        if token.cancelled:
                            break
                        time.sleep(0.0005)
                return kind
            finally:
                with lock:
                    active[lane] -= 1
        return run

    def on_done_for(kind: str, turn: int):
        def on_done(handle):
            with lock:
                done_calls[handle.unit_id] += 1
            if kind == "cancel_in_on_done":
                s.cancel_turn(turn, wait=True, timeout=2)
        return on_done

    try:
        for op in ops:
            if isinstance(op, Submit):
                probe = WorkUnit(lambda t: None, op.kind, op.turn, op.priority, lane=op.lane)
                lane_name = s.lane_for(probe)  # "device/<stage>" in concurrent mode
                unit = WorkUnit(body(op.kind, lane_name), op.kind, op.turn, op.priority, lane=op.lane)
                h = s.submit(unit, on_done=on_done_for(op.kind, op.turn))
                if op.turn in cancel_returned:
                    assert h.cancelled() and h.span.meta["cancel"] == "rejected"
                handles.append(h)
                kinds.append(op.kind)
            elif isinstance(op, Cancel):
                report = s.cancel_turn(op.turn, wait=op.wait, timeout=2)
                if op.wait:
                    assert report.running_stopped
                cancel_returned.setdefault(op.turn, Scheduler.clock())
            elif isinstance(op, CancelUnit):
                if handles:
                    handles[op.index % len(handles)].cancel()
            else:
                time.sleep(op.seconds)
        assert s.wait_idle(10), "scheduler did not settle"
    finally:
        assert s.close(timeout=5)

    assert overlaps == []
    spans = {sp.unit_id: sp for sp in s.spans.snapshot()}
    assert len(spans) == len(handles)
    for h, kind in zip(handles, kinds):
        assert h.done() and h.state.terminal
        assert done_calls[h.unit_id] == 1, "on_done must run exactly once"
        assert spans[h.unit_id] is h.span and h.span.status == STATUS_OF[h.state]
        if kind == "raise":
            assert h.state in (UnitState.FAILED, UnitState.CANCELLED)
        if h.state in (UnitState.DONE, UnitState.FAILED):
            assert h.span.started_at is not None
    for turn, returned_at in cancel_returned.items():
        for sp in s.spans.for_turn(turn):
            assert sp.started_at is None or sp.started_at < returned_at
    by_lane = defaultdict(list)
    for sp in spans.values():
        if sp.started_at is not None:
            by_lane[sp.lane].append(sp)
    for lane_spans in by_lane.values():
        lane_spans.sort(key=lambda sp: sp.started_at)
        for a, b in zip(lane_spans, lane_spans[1:]):
            assert a.finished_at <= b.started_at, "units of one lane overlapped"
