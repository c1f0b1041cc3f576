"""The stream driver end to end with fake produce/split/render callables, in every mode."""

from __future__ import annotations

import random
import re
import threading
import time

import pytest

from scheduler import InterleavedStream, Mode, Priority, Scheduler, SchedulerSettings, StreamSummary, WorkUnit

pytestmark = pytest.mark.timeout(30)

TEXT = ("Sure, the tallest mountain in Africa is Kilimanjaro in Tanzania. It rises about five "
        "thousand nine hundred meters above the sea, and its summit is called Uhuru Peak. Many "
        "people climb it every year, although the altitude makes it hard. The most popular route "
        "takes about six days, with a rest day to get used to the thin air on the way up. Guides "
        "and porters are required by the park, and most climbers start from the town of Moshi. "
        "The best months are January, February and September, when the weather is dry and the "
        "views of the glaciers near the crater are clear. The glaciers have been shrinking for a "
        "century, and scientists expect them to vanish within a few decades. Would you like to "
        "know more about the routes, the costs, or the training you would need before you go?")


class FakeReply:
    """One word per token; records every call in ``events`` (shared, thread-safe)."""

    def __init__(self, text: str = TEXT, render_s: float = 0.0, produce_s: float = 0.0,
                 lead: float = 0.0) -> None:
        self.words = text.split(" ")
        self.pos = 0
        self.events: list[tuple[str, object]] = []
        self.lock = threading.Lock()
        self.render_s, self.produce_s = render_s, produce_s
        self.lead_value = lead

    def record(self, kind: str, value: object) -> None:
        with self.lock:
            self.events.append((kind, value))

    def produce(self, max_tokens: int, token) -> tuple[str, bool]:
        self.record("produce", max_tokens)
        time.sleep(self.produce_s)
        chunk = self.words[self.pos:self.pos + max_tokens]
        self.pos += len(chunk)
        finished = self.pos >= len(self.words)
        return " ".join(chunk) + ("" if finished else " "), finished

    @staticmethod
    def split(buffer: str, first: bool, final: bool) -> tuple[list[str], str]:
        segments = []
        pattern = r"[,.!?]\s" if first else r"[.!?]\s"
        while (m := re.search(pattern, buffer)) is not None:
            segments.append(buffer[:m.end()])
            buffer = buffer[m.end():]
            pattern = r"[.!?]\s"
        return segments, buffer

    def render(self, segment: str, token) -> float:
        self.record("render", segment)
        time.sleep(self.render_s)
        return 0.3 * len(segment.split())

    def lead(self) -> float:
        return self.lead_value

    def kinds(self) -> list[str]:
        with self.lock:
            return [kind for kind, _ in self.events]


def run_stream(mode: Mode, fake: FakeReply, **kwargs) -> tuple[Scheduler, InterleavedStream, StreamSummary]:
    sched = Scheduler(SchedulerSettings(mode=mode))
    stream = InterleavedStream(sched, 1, produce=fake.produce, split=fake.split, render=fake.render,
                               lead=fake.lead, **kwargs).start()
    summary = stream.wait(10)
    assert summary is not None, "stream did not finish"
    return sched, stream, summary


def joined(segments) -> str:
    return "".join(segments).strip()


def test_interleaved_renders_after_the_first_small_chunk():
    fake = FakeReply()
    sched, _stream, summary = run_stream(Mode.INTERLEAVED, fake)
    try:
        assert summary.status == "ok" and summary.error is None
        assert fake.events[0] == ("produce", 24)
        assert fake.events[1] == ("render", "Sure, ")  # first clause, before any more text
        assert fake.kinds().count("produce") > 1
        assert joined(summary.rendered) == TEXT and summary.text == TEXT
        assert summary.media_s == pytest.approx(0.3 * len(TEXT.split()))
        assert summary.first_media_at is not None
        assert summary.started_at <= summary.first_media_at <= summary.finished_at
    finally:
        sched.close()


def test_interleaved_renders_every_ready_segment_before_producing_more():
    fake = FakeReply()

    def split(buffer, first, final):
        segments, rest = FakeReply.split(buffer, first, final)
        fake.record("cut", len(segments) + (1 if final and rest.strip() else 0))
        return segments, rest

    with Scheduler() as sched:
        stream = InterleavedStream(sched, 1, produce=fake.produce, split=split, render=fake.render).start()
        assert stream.wait(10).status == "ok"
    waiting = 0
    for kind, value in fake.events:
        if kind == "cut":
            waiting += value
        elif kind == "render":
            waiting -= 1
        else:
            assert waiting == 0, "produced while a segment was waiting to be rendered"
    assert waiting == 0
    assert fake.kinds().count("produce") >= 3


def test_sequential_renders_only_after_the_whole_text():
    fake = FakeReply()
    sched, _stream, summary = run_stream(Mode.SEQUENTIAL, fake)
    try:
        kinds = fake.kinds()
        first_render = kinds.index("render")
        assert "produce" not in kinds[first_render:]
        assert all(v == 96 for k, v in fake.events if k == "produce")
        assert joined(summary.rendered) == TEXT and summary.status == "ok"
    finally:
        sched.close()


def test_concurrent_mode_renders_while_producing_on_separate_lanes():
    fake = FakeReply()
    second_produce = threading.Event()
    overlapped: list[bool] = []
    original_produce, original_render = fake.produce, fake.render

    def produce(n, token):
        out = original_produce(n, token)
        if fake.kinds().count("produce") >= 2:
            second_produce.set()
        return out

    def render(segment, token):
        if not overlapped:  # the first render waits for the producer to move on
            overlapped.append(second_produce.wait(5))
        return original_render(segment, token)

    sched = Scheduler(SchedulerSettings(mode=Mode.CONCURRENT))
    try:
        stream = InterleavedStream(sched, 1, produce=produce, split=fake.split, render=render).start()
        summary = stream.wait(10)
        assert summary is not None and summary.status == "ok"
        assert overlapped == [True]
        assert joined(summary.rendered) == TEXT
        lanes = {s.stage: s.lane for s in sched.spans.for_turn(1)}
        assert lanes == {"produce": "device/produce", "render": "device/render"}
    finally:
        sched.close()


@pytest.mark.parametrize("lead, expected", [(0.0, [24, 32, 32]), (5.0, [24, 64, 96])])
def test_lead_drives_chunk_growth(lead, expected):
    fake = FakeReply(lead=lead)
    sched, _stream, _summary = run_stream(Mode.INTERLEAVED, fake)
    try:
        sizes = [s.meta["max_tokens"] for s in sched.spans.snapshot() if s.stage == "produce"]
        assert sizes[:3] == expected
    finally:
        sched.close()


def test_spans_cover_every_unit_with_stage_names_and_priorities():
    fake = FakeReply()
    sched = Scheduler()
    try:
        stream = InterleavedStream(sched, 5, produce=fake.produce, split=fake.split,
                                   render=fake.render, produce_stage="llm", render_stage="tts",
                                   label="reply", meta={"reply": 1}).start()
        summary = stream.wait(10)
        spans = sched.spans.for_turn(5)
        assert {s.stage for s in spans} == {"llm", "tts"}
        assert all(s.status == "ok" and s.meta["reply"] == 1 for s in spans)
        assert len([s for s in spans if s.stage == "llm"]) == summary.produce_steps
        assert len([s for s in spans if s.stage == "tts"]) == summary.render_steps == len(summary.rendered)
        assert [s.meta["segment_index"] for s in spans if s.stage == "tts"] == list(range(summary.render_steps))
        assert spans[0].label == "reply#1"
    finally:
        sched.close()


def test_callbacks_report_segments_in_order_and_finish_once():
    fake = FakeReply()
    rendered, finished = [], []
    sched = Scheduler()
    try:
        stream = InterleavedStream(sched, 1, produce=fake.produce, split=fake.split,
                                   render=fake.render,
                                   on_segment_rendered=lambda i, seg, s: rendered.append((i, seg, s)),
                                   on_finished=finished.append).start()
        summary = stream.wait(10)
        assert finished == [summary] and stream.done()
        assert [i for i, _, _ in rendered] == list(range(len(rendered)))
        assert tuple(seg for _, seg, _ in rendered) == summary.rendered
    finally:
        sched.close()


def test_higher_priority_work_slips_in_between_stream_units():
    fake = FakeReply()
    sched = Scheduler()
    order: list[str] = []
    try:
        def render(segment, token):
            order.append("render")
            if order.count("render") == 1:  # while the first render runs, urgent work arrives
                sched.submit(WorkUnit(lambda t: order.append("urgent"), "listen", 2, Priority.ASR))
            return fake.render(segment, token)

        def produce(n, token):
            order.append("produce")
            return fake.produce(n, token)

        stream = InterleavedStream(sched, 1, produce=produce, split=fake.split, render=render).start()
        assert stream.wait(10).status == "ok"
        assert order[:3] == ["produce", "render", "urgent"]
        assert order.count("urgent") == 1 and order.count("render") > 2
    finally:
        sched.close()


def test_cancel_during_render_stops_the_stream():
    fake = FakeReply()
    sched = Scheduler()
    rendering = threading.Event()
    finished: list[StreamSummary] = []
    try:
        def render(segment, token):
            rendering.set()
            token.wait(5)  # a long render that stops when cancelled
            return 0.1

        stream = InterleavedStream(sched, 3, produce=fake.produce, split=fake.split, render=render,
                                   on_finished=finished.append).start()
        assert rendering.wait(5)
        report = stream.cancel(wait=True, timeout=5)
        assert report.running == 1 and report.running_stopped
        summary = stream.wait(5)
        assert summary is not None and summary.status == "cancelled"
        assert finished == [summary] and summary.rendered == ()
        produced = fake.kinds().count("produce")
        assert sched.wait_idle(5)
        assert fake.kinds().count("produce") == produced == 1  # nothing more after cancel
        cancelled_at = max(s.finished_at for s in sched.spans.for_turn(3))
        assert all(s.started_at is None or s.started_at <= cancelled_at for s in sched.spans.for_turn(3))
    finally:
        sched.close()


def test_cancelling_the_turn_on_the_scheduler_also_ends_the_stream():
    fake = FakeReply(render_s=0.002)
    sched = Scheduler()
    try:
        stream = InterleavedStream(sched, 4, produce=fake.produce, split=fake.split,
                                   render=fake.render).start()
        while "render" not in fake.kinds():
            time.sleep(0.001)
        sched.cancel_turn(4)
        summary = stream.wait(5)
        assert summary is not None and summary.status == "cancelled"
        assert joined(summary.rendered) != TEXT
    finally:
        sched.close()


def test_cancel_before_start_finishes_without_running_anything():
    fake = FakeReply()
    with Scheduler() as sched:
        stream = InterleavedStream(sched, 6, produce=fake.produce, split=fake.split, render=fake.render)
        stream.cancel()
        assert stream.wait(1).status == "cancelled"
        stream.start()
        assert sched.wait_idle(5) and fake.events == []


@pytest.mark.parametrize("broken", ["produce", "render", "split", "produce_type"])
def test_a_failing_callable_ends_the_stream_with_an_error(broken):
    fake = FakeReply()
    errors: list[BaseException] = []
    boom = RuntimeError(f"{broken} failed")
    calls = {"produce": fake.produce, "split": fake.split, "render": fake.render}

    def fail(*_args):
        raise boom

    if broken == "produce_type":
        calls["produce"] = lambda n, t: "not a tuple"
    else:
        calls[broken] = fail
    with Scheduler() as sched:
        stream = InterleavedStream(sched, 7, on_error=errors.append, **calls).start()
        summary = stream.wait(10)
        assert summary is not None and summary.status == "error"
        assert len(errors) == 1 and summary.error is errors[0]
        if broken == "produce_type":
            assert isinstance(errors[0], TypeError)
        else:
            assert errors[0] is boom
        assert sched.wait_idle(5)
        assert fake.kinds().count("render") <= 1  # stopped right after the failure


def test_a_producer_that_never_produces_is_stopped():
    with Scheduler() as sched:
        stream = InterleavedStream(sched, 8, produce=lambda n, t: ("", False),
                                   split=FakeReply.split, render=lambda s, t: 0.0).start()
        summary = stream.wait(10)
        assert summary.status == "error" and "no text" in str(summary.error)


def test_starting_twice_is_an_error():
    fake = FakeReply()
    with Scheduler() as sched:
        stream = InterleavedStream(sched, 9, produce=fake.produce, split=fake.split, render=fake.render)
        stream.start()
        with pytest.raises(RuntimeError):
            stream.start()
        assert stream.wait(10).status == "ok"


@pytest.mark.timeout(20)
@pytest.mark.parametrize("mode", list(Mode))
def test_cancel_at_random_moments_always_finishes_exactly_once(mode):
    rng = random.Random(7)
    with Scheduler(SchedulerSettings(mode=mode)) as sched:
        for turn in range(40):
            fake = FakeReply(render_s=0.0005, produce_s=0.0005)
            finished: list[StreamSummary] = []
            stream = InterleavedStream(sched, turn, produce=fake.produce, split=fake.split,
                                       render=fake.render, on_finished=finished.append).start()
            time.sleep(rng.uniform(0, 0.01))
            stream.cancel(wait=True, timeout=2)
            returned_at = Scheduler.clock()
            summary = stream.wait(5)
            assert summary is not None and finished == [summary]
            assert summary.status in ("ok", "cancelled")
            assert sched.wait_idle(5)
            for span in sched.spans.for_turn(turn):
                assert span.started_at is None or span.started_at < returned_at
