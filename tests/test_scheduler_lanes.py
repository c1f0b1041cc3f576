"""Lanes and the Scheduler's submit path: ordering, one-at-a-time, parallel lanes, modes, errors, spans."""

from __future__ import annotations

import threading
import time

import pytest

from scheduler import (
    CPU_LANE,
    DEVICE_LANE,
    Mode,
    Priority,
    Scheduler,
    SchedulerSettings,
    UnitCancelledError,
    UnitResult,
    UnitState,
    WorkUnit,
)

pytestmark = pytest.mark.timeout(30)


def block_lane(s: Scheduler, lane: str = DEVICE_LANE, turn: int = 999):
    """Occupy a lane until the returned event is set (so later submits queue up)."""
    gate, started = threading.Event(), threading.Event()

    def hold(_token):
        started.set()
        assert gate.wait(5), "gate never opened"

    handle = s.submit(WorkUnit(hold, "gate", turn, Priority.URGENT, lane=lane))
    assert started.wait(5)
    return gate, handle


class ConcurrencyProbe:
    """Counts how many probed units run at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0

    def unit_fn(self, seconds: float):
        def run(_token):
            with self.lock:
                self.active += 1
                self.max_active = max(self.max_active, self.active)
            time.sleep(seconds)
            with self.lock:
                self.active -= 1
        return run


def test_priority_order_with_fifo_among_equals(sched):
    gate, _ = block_lane(sched)
    order: list[str] = []
    plan = [("a", 30), ("b", 10), ("c", 30), ("d", 0), ("e", 10), ("f", 50), ("g", 0)]
    handles = [sched.submit(WorkUnit(lambda t, n=n: order.append(n), "s", 1, p)) for n, p in plan]
    gate.set()
    assert sched.wait_idle(5)
    assert order == ["d", "g", "b", "e", "a", "c", "f"]
    assert all(h.state is UnitState.DONE for h in handles)


def test_result_returns_value_and_on_done_runs_on_the_lane_thread(sched):
    where: list[str] = []
    done = threading.Event()

    def on_done(handle):
        where.append(threading.current_thread().name)
        done.set()

    h = sched.submit(WorkUnit(lambda t: 42, "s", 1, 0, lane=CPU_LANE), on_done=on_done)
    assert h.result(5) == 42
    assert done.wait(5)
    assert where == ["lane-cpu"]
    assert h.done() and not h.cancelled() and h.state is UnitState.DONE


def test_device_lane_runs_one_unit_at_a_time_in_interleaved_mode(sched):
    probe = ConcurrencyProbe()
    for i in range(20):
        sched.submit(WorkUnit(probe.unit_fn(0.002), f"stage{i % 3}", 1, i % 4))
    assert sched.wait_idle(10)
    assert probe.max_active == 1


def test_stages_do_not_run_together_in_interleaved_mode(sched):
    barrier = threading.Barrier(2, timeout=0.3)
    a = sched.submit(WorkUnit(lambda t: barrier.wait(), "produce", 1, 0))
    b = sched.submit(WorkUnit(lambda t: barrier.wait(), "render", 1, 0))
    assert isinstance(a.exception(5), threading.BrokenBarrierError)
    assert isinstance(b.exception(5), threading.BrokenBarrierError)


def test_concurrent_mode_gives_each_stage_its_own_device_lane():
    with Scheduler(SchedulerSettings(mode=Mode.CONCURRENT)) as s:
        barrier = threading.Barrier(2, timeout=5)
        a = s.submit(WorkUnit(lambda t: barrier.wait(), "produce", 1, 0))
        b = s.submit(WorkUnit(lambda t: barrier.wait(), "render", 1, 0))
        a.result(5), b.result(5)  # both reached the barrier together: real concurrency
        assert {a.lane, b.lane} == {"device/produce", "device/render"}
        assert {"device/produce", "device/render"} <= set(s.lane_names())
        probe = ConcurrencyProbe()
        for i in range(12):
            s.submit(WorkUnit(probe.unit_fn(0.01), f"stage{i % 3}", 1, 0))
        assert s.wait_idle(10)
        assert probe.max_active > 1
        # cpu units keep their lane in concurrent mode
        assert s.submit(WorkUnit(lambda t: 1, "light", 1, 0, lane=CPU_LANE)).lane == CPU_LANE


def test_cpu_and_device_lanes_run_in_parallel(sched):
    barrier = threading.Barrier(2, timeout=5)
    d = sched.submit(WorkUnit(lambda t: barrier.wait(), "heavy", 1, 0, lane=DEVICE_LANE))
    c = sched.submit(WorkUnit(lambda t: barrier.wait(), "light", 1, 0, lane=CPU_LANE))
    assert d.exception(5) is None and c.exception(5) is None


def test_exception_is_captured_and_the_lane_survives(sched):
    def boom(_token):
        raise ValueError("bad input")

    failed = sched.submit(WorkUnit(boom, "s", 1, 0, label="boom"))
    after = sched.submit(WorkUnit(lambda t: "still alive", "s", 1, 0))
    assert after.result(5) == "still alive"
    assert failed.state is UnitState.FAILED
    with pytest.raises(ValueError, match="bad input"):
        failed.result(0)
    assert isinstance(failed.exception(0), ValueError)
    span = failed.span
    assert span is not None and span.status == "error" and span.label == "boom"
    assert span.error == "ValueError: bad input"


def test_failing_on_done_does_not_kill_the_lane(sched):
    def bad_callback(_handle):
        raise RuntimeError("callback bug")

    sched.submit(WorkUnit(lambda t: 1, "s", 1, 0), on_done=bad_callback)
    assert sched.submit(WorkUnit(lambda t: 2, "s", 1, 0)).result(5) == 2


def test_unit_that_stops_itself_is_cancelled(sched):
    def stop(token):
        raise UnitCancelledError("stopped at a boundary")

    h = sched.submit(WorkUnit(stop, "s", 1, 0))
    assert h.wait(5)
    assert h.cancelled() and h.span.status == "cancelled" and h.span.started_at is not None
    with pytest.raises(UnitCancelledError):
        h.result(0)


def test_spans_record_every_unit_with_times_and_meta(sched):
    h1 = sched.submit(WorkUnit(lambda t: UnitResult("v", {"tokens": 7}), "gen", 4, 30,
                               label="g1", meta={"who": "caller", "tokens": 0}))
    h2 = sched.submit(WorkUnit(lambda t: None, "light", 4, 5, lane=CPU_LANE))
    assert h1.result(5) == "v" and h2.result(5) is None
    spans = {s.unit_id: s for s in sched.spans.for_turn(4)}
    assert set(spans) == {h1.unit_id, h2.unit_id}
    s1 = spans[h1.unit_id]
    assert (s1.lane, s1.stage, s1.turn, s1.label, s1.status) == ("device", "gen", 4, "g1", "ok")
    assert dict(s1.meta) == {"who": "caller", "tokens": 7}
    assert s1.queued_at <= s1.started_at <= s1.finished_at <= Scheduler.clock()
    assert spans[h2.unit_id].lane == "cpu"
    assert h1.span is s1


def test_span_subscribers_see_spans_before_result_returns(sched):
    seen: list[int] = []
    sched.spans.subscribe(lambda span: seen.append(span.unit_id))
    h = sched.submit(WorkUnit(lambda t: None, "s", 1, 0))
    h.result(5)
    assert seen == [h.unit_id]


def test_result_timeout_raises(sched):
    gate, _ = block_lane(sched)
    h = sched.submit(WorkUnit(lambda t: 1, "s", 1, 0))
    with pytest.raises(TimeoutError):
        h.result(0.01)
    gate.set()
    assert h.result(5) == 1


def test_unknown_lane_and_non_unit_are_rejected(sched):
    with pytest.raises(ValueError, match="unknown lane"):
        sched.submit(WorkUnit(lambda t: 1, "s", 1, 0, lane="gpu2"))
    with pytest.raises(TypeError):
        sched.submit(lambda t: 1)  # type: ignore[arg-type]


def test_lane_status_and_pending_show_queue_and_running_unit(sched):
    gate, _ = block_lane(sched, turn=5)
    sched.submit(WorkUnit(lambda t: None, "s", 5, 0, label="queued"))
    status = {lane.name: lane for lane in sched.lane_status()}
    assert status["device"].running_stage == "gate" and status["device"].running_turn == 5
    assert status["device"].queued == 1 and status["cpu"].running_stage is None
    assert sched.pending() == 2
    gate.set()
    assert sched.wait_idle(5) and sched.pending() == 0


def test_close_rejects_later_units_and_stops_running_ones():
    s = Scheduler()
    saw_cancel = threading.Event()
    started = threading.Event()

    def long_unit(token):
        started.set()
        if token.wait(5):
            saw_cancel.set()

    running = s.submit(WorkUnit(long_unit, "s", 1, 0))
    assert started.wait(5)
    queued = s.submit(WorkUnit(lambda t: 1, "s", 1, 0))
    assert s.close(timeout=5) is True
    assert saw_cancel.is_set() and running.cancelled()
    assert queued.cancelled() and queued.span.meta["cancel"] == "closed"
    late = s.submit(WorkUnit(lambda t: 1, "s", 2, 0))
    assert late.cancelled() and late.span.meta["cancel"] == "closed"
    assert s.close() is True  # idempotent
