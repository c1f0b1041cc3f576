"""Unit tests for the scheduler's plain parts: work units, tokens, spans, settings, thread pools."""

from __future__ import annotations

import os
import threading

import pytest

from scheduler import (
    CancelToken,
    Mode,
    Priority,
    SchedulerSettings,
    SettingsError,
    Span,
    SpanLog,
    UnitCancelledError,
    WorkUnit,
    configure_thread_pools,
)
from scheduler.threads import THREAD_POOL_ENV_VARS


def make_span(i: int, turn: int = 0, status: str = "ok") -> Span:
    return Span(unit_id=i, lane="device", stage="s", turn=turn, label=f"u{i}", queued_at=0.0,
                started_at=1.0, finished_at=2.5, status=status)  # type: ignore[arg-type]


# -- work units and tokens ------------------------------------------------------------------
def test_priority_levels_are_ordered_and_aliases_match():
    assert Priority.URGENT < Priority.ASR < Priority.TURN < Priority.TTS < Priority.LLM < Priority.BACKGROUND
    assert Priority.RENDER == Priority.TTS and Priority.PRODUCE == Priority.LLM


def test_work_unit_validates_fields():
    with pytest.raises(TypeError, match="fn"):
        WorkUnit("not callable", "s", 1, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stage"):
        WorkUnit(lambda t: None, "", 1, 0)
    with pytest.raises(TypeError, match="priority"):
        WorkUnit(lambda t: None, "s", 1, 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="turn"):
        WorkUnit(lambda t: None, "s", True, 0)
    with pytest.raises(ValueError, match="lane"):
        WorkUnit(lambda t: None, "s", 1, 0, lane="")


def test_work_unit_is_frozen_and_meta_is_a_read_only_copy():
    meta = {"k": 1}
    unit = WorkUnit(lambda t: None, "s", 1, Priority.ASR, meta=meta)
    meta["k"] = 2
    assert unit.meta["k"] == 1
    with pytest.raises(TypeError):
        unit.meta["k"] = 3  # type: ignore[index]
    with pytest.raises(AttributeError):
        unit.stage = "other"  # type: ignore[misc]
    assert unit.lane == "device" and unit.label == ""


def test_cancel_token_flags_and_raises():
    token = CancelToken()
    assert not token.cancelled and not token.is_set()
    token.raise_if_cancelled()  # no-op while not cancelled
    assert token.wait(0.001) is False
    token.cancel()
    assert token.cancelled and token.is_set() and token.wait(0)
    with pytest.raises(UnitCancelledError):
        token.raise_if_cancelled()


# -- spans -------------------------------------------------------------------------------------
def test_span_durations_and_dict():
    span = make_span(1)
    assert span.wait_s == pytest.approx(1.0) and span.run_s == pytest.approx(1.5)
    never = Span(unit_id=2, lane="cpu", stage="s", turn=1, label="", queued_at=1.0, started_at=None,
                 finished_at=1.25, status="cancelled")
    assert never.run_s == 0.0 and never.wait_s == pytest.approx(0.25)
    assert never.to_dict()["started_at"] is None and never.to_dict()["status"] == "cancelled"


def test_span_log_is_bounded_and_counts_evictions():
    log = SpanLog(capacity=5)
    for i in range(12):
        log.append(make_span(i))
    assert len(log) == 5
    assert [s.unit_id for s in log.snapshot()] == [7, 8, 9, 10, 11]
    assert log.total_recorded == 12 and log.evicted == 7 and log.capacity == 5
    log.clear()
    assert log.snapshot() == []


def test_span_log_rejects_bad_capacity():
    with pytest.raises(ValueError, match="capacity"):
        SpanLog(capacity=0)


def test_span_log_for_turn_and_subscribe_unsubscribe():
    log = SpanLog()
    seen: list[int] = []
    unsubscribe = log.subscribe(lambda s: seen.append(s.unit_id))
    log.append(make_span(1, turn=3))
    log.append(make_span(2, turn=4))
    unsubscribe()
    unsubscribe()  # twice is harmless
    log.append(make_span(3, turn=3))
    assert seen == [1, 2]
    assert [s.unit_id for s in log.for_turn(3)] == [1, 3]


def test_failing_subscriber_does_not_stop_others_or_the_append():
    log = SpanLog()
    seen: list[int] = []

    def broken(_span: Span) -> None:
        raise RuntimeError("observer bug")

    log.subscribe(broken)
    log.subscribe(lambda s: seen.append(s.unit_id))
    log.append(make_span(9))
    assert seen == [9] and len(log) == 1


def test_span_log_is_thread_safe_under_concurrent_appends():
    log = SpanLog(capacity=1000)
    count = [0]
    lock = threading.Lock()

    def counter(_span: Span) -> None:
        with lock:
            count[0] += 1

    log.subscribe(counter)

    def writer(base: int) -> None:
        for i in range(500):
            log.append(make_span(base + i))

    threads = [threading.Thread(target=writer, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.total_recorded == 2000 and len(log) == 1000 and count[0] == 2000


# -- settings --------------------------------------------------------------------------------
def test_settings_defaults_match_the_reference():
    s = SchedulerSettings()
    assert s.mode is Mode.INTERLEAVED
    assert (s.first_chunk_max_tokens, s.chunk_tokens, s.max_chunk_tokens) == (24, 32, 96)
    assert (s.lead_target_s, s.lead_comfortable_s) == (1.5, 3.0)
    assert s.cpu_lane_threads == 1 and s.device_threads is None and s.span_capacity == 20_000


def test_settings_accepts_mode_strings():
    assert SchedulerSettings(mode="concurrent").mode is Mode.CONCURRENT  # type: ignore[arg-type]
    assert SchedulerSettings(mode="sequential").mode is Mode.SEQUENTIAL  # type: ignore[arg-type]


@pytest.mark.parametrize("changes, field", [
    ({"mode": "parallel"}, "mode"),
    ({"chunk_tokens": 0}, "chunk_tokens"),
    ({"first_chunk_max_tokens": -1}, "first_chunk_max_tokens"),
    ({"chunk_tokens": 64, "max_chunk_tokens": 32}, "max_chunk_tokens"),
    ({"lead_target_s": -0.1}, "lead_target_s"),
    ({"lead_target_s": float("nan")}, "lead_target_s"),
    ({"lead_target_s": 4.0, "lead_comfortable_s": 3.0}, "lead_comfortable_s"),
    ({"cpu_lane_threads": 0}, "cpu_lane_threads"),
    ({"device_threads": 0}, "device_threads"),
    ({"span_capacity": True}, "span_capacity"),
    ({"chunk_tokens": 3.5}, "chunk_tokens"),
])
def test_settings_errors_name_the_field(changes, field):
    with pytest.raises(SettingsError) as info:
        SchedulerSettings(**changes)
    assert info.value.field == field
    assert field in str(info.value)


def test_settings_round_trip_through_a_mapping():
    s = SchedulerSettings(mode=Mode.SEQUENTIAL, chunk_tokens=40, device_threads=2)
    mapping = s.to_mapping()
    assert mapping["mode"] == "sequential" and mapping["device_threads"] == 2
    assert SchedulerSettings.from_mapping(mapping) == s
    with pytest.raises(SettingsError) as info:
        SchedulerSettings.from_mapping({"chunk_tokenz": 3})
    assert info.value.field == "chunk_tokenz"


# -- thread pools ------------------------------------------------------------------------------
def test_configure_thread_pools_sets_defaults_without_overriding(monkeypatch):
    for name in THREAD_POOL_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "7")
    assert configure_thread_pools(2) == 2
    assert os.environ["OMP_NUM_THREADS"] == "2"
    assert os.environ["OPENBLAS_NUM_THREADS"] == "2"
    assert os.environ["MKL_NUM_THREADS"] == "7"


def test_configure_thread_pools_defaults_to_available_cores(monkeypatch):
    for name in THREAD_POOL_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    n = configure_thread_pools()
    assert n >= 1 and os.environ["OMP_NUM_THREADS"] == str(n)
    with pytest.raises(ValueError):
        configure_thread_pools(0)
