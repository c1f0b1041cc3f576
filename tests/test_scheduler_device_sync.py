"""Spans true to an asynchronous device: a device-lane unit ends when the device work it launched has ended.

A GPU runs kernels after the call that launched them has returned. `FakeAsyncDevice` behaves the same way on the
CPU: `launch(seconds)` queues a "kernel" on its own stream thread and returns at once; `synchronize()` waits until
every kernel launched so far has run (and raises the first asynchronous error, as CUDA does). With the scheduler's
device barrier, spans measure the kernels' time and the next unit never starts while the previous one's kernels
still run; without it, spans measure launches only (the first test shows the difference is real)."""
from __future__ import annotations

import queue
import threading
import time

import pytest

from scheduler import (
    CPU_LANE,
    DEVICE_LANE,
    InterleavedStream,
    Mode,
    Scheduler,
    SchedulerSettings,
    UnitResult,
    WorkUnit,
)

KERNEL_S = 0.05


class DeviceError(RuntimeError):
    pass


class FakeAsyncDevice:
    """One in-order stream of kernels on a thread; records when each ran (perf_counter, the spans' clock)."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, float, float]] = []  # (name, start, end)
        self.syncs = 0
        self._queue: queue.Queue[tuple[str, float, bool] | None] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._error: DeviceError | None = None
        self._thread = threading.Thread(target=self._stream, daemon=True)
        self._thread.start()

    def launch(self, name: str, seconds: float = KERNEL_S, fails: bool = False) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put((name, seconds, fails))

    def synchronize(self) -> None:
        with self._idle:
            self.syncs += 1
            self._idle.wait_for(lambda: self._pending == 0, timeout=5)
            error, self._error = self._error, None
        if error is not None:
            raise error

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(2)

    def _stream(self) -> None:
        while (item := self._queue.get()) is not None:
            name, seconds, fails = item
            start = time.perf_counter()
            time.sleep(seconds)
            with self._idle:
                self.ran.append((name, start, time.perf_counter()))
                if fails and self._error is None:
                    self._error = DeviceError(f"kernel {name} failed")
                self._pending -= 1
                self._idle.notify_all()

    def window(self, name: str) -> tuple[float, float]:
        return next((start, end) for n, start, end in self.ran if n == name)


@pytest.fixture
def device():
    dev = FakeAsyncDevice()
    yield dev
    dev.close()


def launcher(device: FakeAsyncDevice, name: str, fails: bool = False):
    def run(token):
        device.launch(name, fails=fails)
        return name
    return run


def run_units(sched: Scheduler, device: FakeAsyncDevice, names: list[str], lane: str = DEVICE_LANE):
    handles = [sched.submit(WorkUnit(launcher(device, n), stage=n, turn=1, priority=0, lane=lane)) for n in names]
    for handle in handles:
        handle.wait(5)
    device.synchronize()
    return {s.stage: s for s in sched.spans.snapshot()}


def test_without_a_barrier_spans_measure_launches_only(device):
    with Scheduler() as sched:
        spans = run_units(sched, device, ["a"])
    _start, end = device.window("a")
    assert spans["a"].finished_at < end, "the fake device is not asynchronous: this file tests nothing"
    assert spans["a"].run_s < KERNEL_S / 2
    assert "sync_ms" not in spans["a"].meta


def test_with_the_barrier_a_unit_ends_when_its_device_work_has_ended(device):
    with Scheduler(device_barrier=device.synchronize) as sched:
        spans = run_units(sched, device, ["a", "b", "c"])
    for name in "abc":
        start, end = device.window(name)
        span = spans[name]
        assert span.finished_at >= end, f"{name}: span ended before its kernel"
        assert span.run_s >= end - start
        assert span.meta["sync_ms"] >= (end - start) * 1000 * 0.5
    # the lane is the unit's until its kernels ended: the next unit starts after them (no overlap)
    assert spans["b"].started_at >= device.window("a")[1]
    assert spans["c"].started_at >= device.window("b")[1]


def test_an_asynchronous_device_error_fails_the_unit_that_launched_it_and_the_lane_goes_on(device):
    with Scheduler(device_barrier=device.synchronize) as sched:
        bad = sched.submit(WorkUnit(launcher(device, "bad", fails=True), stage="bad", turn=1, priority=0))
        good = sched.submit(WorkUnit(launcher(device, "good"), stage="good", turn=1, priority=0))
        assert good.result(5) == "good"
        assert bad.span is not None and bad.span.status == "error"
        assert "kernel bad failed" in (bad.span.error or "")
        with pytest.raises(DeviceError):
            bad.result(0)


def test_a_cancelled_unit_still_waits_for_what_it_launched(device):
    with Scheduler(device_barrier=device.synchronize) as sched:
        def run(token):
            device.launch("launched")
            token.cancel()
            token.raise_if_cancelled()
        handle = sched.submit(WorkUnit(run, stage="cut", turn=1, priority=0))
        handle.wait(5)
    assert handle.span is not None and handle.span.status == "cancelled"
    assert handle.span.finished_at >= device.window("launched")[1]


def test_only_device_lanes_synchronize(device):
    with Scheduler(device_barrier=device.synchronize) as sched:
        run_units(sched, device, ["on_cpu"], lane=CPU_LANE)
        assert device.syncs == 1  # only the test's own call
        spans = run_units(sched, device, ["on_device"])
        assert device.syncs == 3
    assert "sync_ms" not in spans["on_cpu"].meta and "sync_ms" in spans["on_device"].meta


def test_concurrent_mode_device_lanes_synchronize_too(device):
    with Scheduler(SchedulerSettings(mode=Mode.CONCURRENT), device_barrier=device.synchronize) as sched:
        spans = run_units(sched, device, ["x", "y"])
    assert spans["x"].lane == "device/x" and "sync_ms" in spans["x"].meta
    assert all(spans[n].finished_at >= device.window(n)[1] for n in "xy")


def test_interleaved_reply_spans_cover_each_chunks_device_time(device):
    """An LLM chunk and a TTS segment that each launch kernels: every span covers its kernels, and no two units'
    kernels run at once (the interleaving measured in device time)."""
    words = iter(["Hello there. ", "How are ", "you today?"])

    def produce(max_tokens, token):
        text = next(words, "")
        device.launch(f"llm:{text}")
        return UnitResult((text, text.endswith("?")))

    def render(segment, token):
        device.launch(f"tts:{segment}", seconds=KERNEL_S * 1.5)
        return 0.5

    def split(buffer, first, final):
        if final or "." in buffer:
            return [buffer], ""
        return [], buffer

    with Scheduler(device_barrier=device.synchronize) as sched:
        stream = InterleavedStream(sched, 1, produce=produce, split=split, render=render).start()
        summary = stream.wait(10)
        assert summary is not None and summary.status == "ok"
        spans = sorted(sched.spans.for_turn(1), key=lambda s: s.started_at)
    kernels = sorted(device.ran, key=lambda k: k[1])
    assert len(kernels) == len(spans) >= 4
    for span, (name, start, end) in zip(spans, kernels):
        assert span.started_at <= start and span.finished_at >= end, f"{span.stage} does not cover {name}"
    for (_n1, _s1, end1), (_n2, start2, _e2) in zip(kernels, kernels[1:]):
        assert start2 >= end1
