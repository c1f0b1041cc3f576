"""Cancellation at every point: queued, running, between units, after completion, from callbacks, races."""

from __future__ import annotations

import random
import threading
import time

import pytest

from scheduler import CPU_LANE, NO_TURN, Priority, Scheduler, UnitCancelledError, UnitState, WorkUnit

pytestmark = pytest.mark.timeout(30)


def stepping_unit(started: threading.Event, steps: list[int], step_s: float = 0.002, n: int = 2000):
    """A unit that works in small steps and stops at the first boundary after cancellation."""

    def run(token):
        started.set()
        for i in range(n):
            if token.cancelled:
                return "stopped"
            steps.append(i)
            time.sleep(step_s)
        return "finished"

    return run


def test_cancel_drops_queued_units_and_keeps_other_turns(sched):
    gate = threading.Event()
    sched.submit(WorkUnit(lambda t: gate.wait(5), "gate", 1, 0))
    ran: list[str] = []
    done_calls: list[int] = []
    t2 = [sched.submit(WorkUnit(lambda t, i=i: ran.append(f"t2-{i}"), "s", 2, 10),
                       on_done=lambda h: done_calls.append(h.unit_id)) for i in range(3)]
    t3 = sched.submit(WorkUnit(lambda t: ran.append("t3"), "s", 3, 10))
    report = sched.cancel_turn(2)
    assert report.dropped == 3 and report.running == 0 and report.running_stopped
    assert all(h.cancelled() for h in t2)
    assert sorted(done_calls) == sorted(h.unit_id for h in t2)  # on_done ran before cancel returned
    for h in t2:
        assert h.span.status == "cancelled" and h.span.started_at is None
        assert h.span.meta["cancel"] == "queued"
        with pytest.raises(UnitCancelledError):
            h.result(0)
    gate.set()
    assert t3.result(5) is None
    assert sched.wait_idle(5)
    assert ran == ["t3"]


def test_cancel_stops_running_unit_and_waits_for_it(sched):
    started, steps = threading.Event(), []
    h = sched.submit(WorkUnit(stepping_unit(started, steps), "s", 7, 0))
    assert started.wait(5)
    report = sched.cancel_turn(7, wait=True, timeout=5)
    assert report.running == 1 and report.running_stopped and report.dropped == 0
    assert h.done() and h.cancelled()  # returned before cancel_turn did
    assert h.span.status == "cancelled" and h.span.meta["cancel"] == "running"
    assert h.span.started_at is not None
    assert len(steps) < 2000
    assert report.elapsed_ms >= 0


def test_cancel_without_wait_returns_before_the_unit_stops(sched):
    release = threading.Event()
    started = threading.Event()

    def stubborn(token):
        started.set()
        release.wait(5)  # ignores the token until released

    h = sched.submit(WorkUnit(stubborn, "s", 8, 0))
    assert started.wait(5)
    report = sched.cancel_turn(8, wait=False)
    assert report.running == 1 and report.running_stopped is False
    assert not h.done() and h.token.cancelled
    release.set()
    assert h.wait(5) and h.cancelled()


def test_cancel_wait_times_out_on_a_unit_that_ignores_its_token(sched):
    release = threading.Event()
    started = threading.Event()
    sched.submit(WorkUnit(lambda t: (started.set(), release.wait(5)), "s", 9, 0))
    assert started.wait(5)
    report = sched.cancel_turn(9, wait=True, timeout=0.05)
    assert report.running_stopped is False
    release.set()


def test_cancel_between_units_stops_the_chain(sched):
    ran: list[int] = []
    turn = 11
    proceed = threading.Event()

    def chain(i: int):
        def on_done(h):
            if h.cancelled():
                return  # a chain stops at its first cancelled unit
            if i == 0:
                proceed.wait(5)  # the canceller acts while this turn has nothing queued or running
            sched.submit(WorkUnit(lambda t, j=i + 1: ran.append(j), "s", turn, 0), on_done=chain(i + 1))
        return on_done

    sched.submit(WorkUnit(lambda t: ran.append(0), "s", turn, 0), on_done=chain(0))
    while not ran:
        time.sleep(0.001)
    report = sched.cancel_turn(turn)
    proceed.set()
    assert report.dropped == 0 and report.running == 0
    assert sched.wait_idle(5)
    assert ran == [0]
    rejected = [s for s in sched.spans.for_turn(turn) if s.meta.get("cancel") == "rejected"]
    assert len(rejected) == 1


def test_cancel_after_completion_changes_nothing(sched):
    h = sched.submit(WorkUnit(lambda t: "ok", "s", 12, 0))
    assert h.result(5) == "ok"
    report = sched.cancel_turn(12)
    assert (report.dropped, report.running, report.running_stopped) == (0, 0, True)
    assert h.state is UnitState.DONE and h.result(0) == "ok" and h.span.status == "ok"


def test_cancel_twice_is_harmless(sched):
    gate = threading.Event()
    sched.submit(WorkUnit(lambda t: gate.wait(5), "gate", 1, 0))
    h = sched.submit(WorkUnit(lambda t: 1, "s", 13, 0))
    first = sched.cancel_turn(13)
    second = sched.cancel_turn(13)
    assert first.dropped == 1 and second.dropped == 0
    gate.set()
    assert sched.wait_idle(5)
    assert h.cancelled() and len(sched.spans.for_turn(13)) == 1


def test_submit_after_cancel_is_rejected_at_once(sched):
    sched.cancel_turn(14)
    calls: list[str] = []
    h = sched.submit(WorkUnit(lambda t: calls.append("ran"), "s", 14, 0),
                     on_done=lambda hh: calls.append("done"))
    assert h.cancelled() and calls == ["done"]
    assert h.span.meta["cancel"] == "rejected" and h.span.started_at is None
    assert sched.is_turn_cancelled(14) and not sched.is_turn_cancelled(15)
    assert sched.submit(WorkUnit(lambda t: "fresh", "s", 15, 0)).result(5) == "fresh"


def test_cancel_from_on_done_on_the_lane_thread_does_not_deadlock(sched):
    gate = threading.Event()
    sched.submit(WorkUnit(lambda t: gate.wait(5), "gate", 1, 0))
    reports = []
    first = sched.submit(WorkUnit(lambda t: None, "s", 16, 0),
                         on_done=lambda h: reports.append(sched.cancel_turn(16, wait=True, timeout=5)))
    later = [sched.submit(WorkUnit(lambda t: None, "s", 16, 1)) for _ in range(3)]
    gate.set()
    assert sched.wait_idle(5)
    assert first.state is UnitState.DONE
    assert len(reports) == 1 and reports[0].dropped == 3 and reports[0].running_stopped
    assert all(h.cancelled() for h in later)


def test_cancel_from_inside_a_running_unit_does_not_wait_for_itself(sched):
    reports = []

    def self_cancelling(token):
        reports.append(sched.cancel_turn(17, wait=True, timeout=5))
        return token.cancelled

    h = sched.submit(WorkUnit(self_cancelling, "s", 17, 0))
    assert h.wait(5)
    assert h.cancelled() and h.span.status == "cancelled"  # its own token was set
    assert reports[0].running == 1 and reports[0].running_stopped is False
    assert reports[0].elapsed_ms < 4000  # did not sit out the 5 s wait on itself


def test_cancel_reaches_units_on_every_lane(sched):
    started_d, started_c = threading.Event(), threading.Event()
    d = sched.submit(WorkUnit(stepping_unit(started_d, []), "heavy", 18, 0))
    c = sched.submit(WorkUnit(stepping_unit(started_c, []), "light", 18, 0, lane=CPU_LANE))
    assert started_d.wait(5) and started_c.wait(5)
    report = sched.cancel_turn(18, timeout=5)
    assert report.running == 2 and report.running_stopped
    assert d.cancelled() and c.cancelled()


def test_cancel_unit_cancels_one_unit_without_cancelling_the_turn(sched):
    gate = threading.Event()
    sched.submit(WorkUnit(lambda t: gate.wait(5), "gate", 1, 0))
    a = sched.submit(WorkUnit(lambda t: "a", "s", 19, 0))
    b = sched.submit(WorkUnit(lambda t: "b", "s", 19, 0))
    report = a.cancel()
    assert report.dropped == 1 and a.cancelled()
    assert not sched.is_turn_cancelled(19)
    gate.set()
    assert b.result(5) == "b"


def test_no_turn_cannot_be_cancelled_as_a_turn(sched):
    with pytest.raises(ValueError):
        sched.cancel_turn(NO_TURN)


def test_no_unit_of_a_cancelled_turn_starts_after_cancel_returns(sched):
    turn = 20
    rng = random.Random(99)
    returned_at: list[float] = []
    for _round in range(30):
        for i in range(5):
            sched.submit(WorkUnit(lambda t: time.sleep(0.0005), "s", turn, i % 3))
        time.sleep(rng.uniform(0, 0.002))
        sched.cancel_turn(turn, wait=False)
        returned_at.append(Scheduler.clock())
        turn += 1
    assert sched.wait_idle(5)
    for k, t_returned in enumerate(returned_at):
        for span in sched.spans.for_turn(20 + k):
            if span.started_at is not None:
                assert span.started_at < t_returned


@pytest.mark.timeout(20)
def test_cancel_racing_completion_never_deadlocks():
    rng = random.Random(1234)
    with Scheduler() as s:
        for turn in range(300):
            done_calls: list[int] = []
            pause = rng.uniform(0, 0.0008)

            def unit(token, pause=pause):
                time.sleep(pause)
                return "x"

            handles = [s.submit(WorkUnit(unit, "s", turn, rng.randint(0, 2),
                                         lane=rng.choice(["device", "cpu"])),
                                on_done=lambda h, calls=done_calls: calls.append(h.unit_id))
                       for _ in range(rng.randint(1, 3))]
            if rng.random() < 0.3:  # also race a cancel issued from a lane thread
                s.submit(WorkUnit(lambda t: None, "s", turn, 0),
                         on_done=lambda h, tt=turn: s.cancel_turn(tt, wait=True, timeout=2))
            time.sleep(rng.uniform(0, 0.0008))
            report = s.cancel_turn(turn, wait=True, timeout=2)
            assert report.running_stopped
            assert s.wait_idle(2), "units never settled"
            for h in handles:
                assert h.state in (UnitState.DONE, UnitState.CANCELLED)
                assert (h.span.status == "ok") == (h.state is UnitState.DONE)
            assert sorted(done_calls) == sorted(h.unit_id for h in handles)  # exactly once each


def test_priority_urgent_unit_runs_before_queued_turn_units(sched):
    gate = threading.Event()
    sched.submit(WorkUnit(lambda t: gate.wait(5), "gate", 1, 0))
    order: list[str] = []
    sched.submit(WorkUnit(lambda t: order.append("reply"), "s", 21, Priority.LLM))
    sched.submit(WorkUnit(lambda t: order.append("urgent"), "s", 22, Priority.URGENT))
    gate.set()
    assert sched.wait_idle(5)
    assert order == ["urgent", "reply"]
