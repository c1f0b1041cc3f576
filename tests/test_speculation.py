"""A reply prepared during the pause: the scheduler's parts (a yield hint for long units, a held stream that stops
after its first segment, discarding one stream without its turn), the playback buffer's hold (held audio is never
heard), the match rule, and the session with small fake engines: a speculation on words that change is discarded
and nothing of it reaches the speaker or the history. Real engines: test_headless.py."""
from __future__ import annotations

import doctest
import threading
import time

import numpy as np
import pytest

from app.audio.playback import PlaybackBuffer
from app.conversation import actions as a
from app.conversation import speculation
from app.conversation.speculation import same_words
from app.stages import Stage
from engines.protocols import Message
from scheduler import (
    DEVICE_LANE,
    InterleavedStream,
    Mode,
    Priority,
    Scheduler,
    SchedulerSettings,
    StreamState,
    WorkUnit,
    decide,
)
from tests.test_scheduler_interleave import FakeReply
from tests.test_session_shell import Beep, PlainLlm, ScriptedGeneration, engines, talk

pytestmark = pytest.mark.timeout(60)


def test_the_match_rule_examples():
    assert doctest.testmod(speculation).failed == 0
    assert same_words("Is a tomato a fruit?", "is a tomato, a fruit.")
    assert not same_words("Is a tomato", "Is a tomato a fruit?")


# ---- the scheduler ------------------------------------------------------------------------------------------

def test_a_running_unit_learns_that_a_more_urgent_unit_waits():
    seen: list[bool] = []
    started, go = threading.Event(), threading.Event()

    def long_unit(token):
        seen.append(token.yield_requested)  # nothing waits yet
        started.set()
        go.wait(5)
        seen.append(token.yield_requested)  # the ASR unit is queued now

    with Scheduler(SchedulerSettings()) as sched:
        handle = sched.submit(WorkUnit(long_unit, "llm", 1, Priority.LLM))
        assert started.wait(5)
        sched.submit(WorkUnit(lambda tok: None, "tts", 1, Priority.BACKGROUND))  # less urgent: no
        go.set()
        handle.result(5)
        assert seen == [False, False]
        started.clear()
        go.clear()
        seen.clear()
        handle = sched.submit(WorkUnit(long_unit, "llm", 1, Priority.LLM))
        assert started.wait(5)
        sched.submit(WorkUnit(lambda tok: None, "asr", 1, Priority.ASR))
        go.set()
        handle.result(5)
        assert seen == [False, True]


@pytest.mark.parametrize("mode", list(Mode))
def test_a_held_stream_waits_after_its_first_segment(mode):
    settings = SchedulerSettings(mode=mode)
    first = StreamState(segments_emitted=1, segments_rendered=1, held=True)
    assert decide(first, settings) == ()
    assert decide(StreamState(held=True), settings)  # before its first segment it runs
    done = StreamState(segments_emitted=1, segments_rendered=1, held=True, producer_finished=True)
    assert decide(done, settings)[0].kind.value == "done"  # a reply of one segment may end while held


def test_a_held_stream_renders_one_segment_then_goes_on_when_released():
    fake = FakeReply()
    with Scheduler(SchedulerSettings()) as sched:
        stream = InterleavedStream(sched, 1, produce=fake.produce, split=fake.split, render=fake.render,
                                   held=True).start()
        time.sleep(0.3)
        assert fake.kinds() == ["produce", "render"] and not stream.done()
        stream.release()
        summary = stream.wait(10)
        assert summary is not None and summary.status == "ok" and fake.kinds().count("render") > 1


def test_discarding_a_stream_leaves_its_turns_other_work_alone():
    fake = FakeReply(produce_s=0.05)
    ran = threading.Event()
    with Scheduler(SchedulerSettings()) as sched:
        stream = InterleavedStream(sched, 7, produce=fake.produce, split=fake.split, render=fake.render).start()
        other = sched.submit(WorkUnit(lambda tok: time.sleep(0.2) or ran.set(), "turn", 7, Priority.BACKGROUND,
                                      lane=DEVICE_LANE))
        stream.discard()
        summary = stream.wait(5)
        assert summary is not None and summary.status == "cancelled"
        other.result(5)
        assert ran.is_set() and not sched.is_turn_cancelled(7)


# ---- the playback buffer ------------------------------------------------------------------------------------

def test_held_audio_is_silent_until_released_and_gone_when_flushed():
    buf = PlaybackBuffer(16000)
    buf.hold(2)
    buf.push(2, np.ones(1600, np.float32), 16000)
    out, notes = buf.read(512)
    assert not out.any() and notes == [] and buf.queued_s(2) == pytest.approx(0.1)
    buf.release(2)
    out, notes = buf.read(512)
    assert out.all() and notes[0].first

    buf.hold(3)
    buf.push(3, np.full(1600, 0.7, np.float32), 16000)
    buf.flush(3)
    buf.push(4, np.full(512, 0.5, np.float32), 16000)
    out, _ = buf.read(4096)
    assert not np.isclose(out, 0.7).any(), "audio of a flushed held turn was played"
    assert np.isclose(out, 0.5).sum() == 512


# ---- the session, with fake engines -------------------------------------------------------------------------

class WordsLlm(PlainLlm):
    """Answers the partial words 'hello' with 'Wrong words.' and anything else with the usual reply."""

    def start(self, messages, max_tokens: int = 256) -> ScriptedGeneration:
        self.prompts.append(messages)
        if messages[-1] == Message("user", "hello"):
            return ScriptedGeneration(["Wrong ", "words. ", "More ", "of ", "them."])
        return ScriptedGeneration(["Hi ", "there. ", "Nice ", "to ", "hear ", "you."])


class LoudWhenWrong(Beep):
    """The voice is loud (0.8) for the discarded speculation's text, quiet (0.1) otherwise."""

    def synthesize(self, text: str):
        from engines.protocols import AudioChunk

        level = 0.8 if "Wrong" in text else 0.1
        yield AudioChunk(np.full(16000 // 5, level, dtype=np.float32), 16000)


def test_a_speculation_on_words_that_change_is_never_heard():
    fake = engines()
    fake.llm, fake.tts = WordsLlm(), LoudWhenWrong()
    heard: list[np.ndarray] = []
    original_read = PlaybackBuffer.read

    def spy(self, frames):
        out, notes = original_read(self, frames)
        heard.append(out.copy())
        return out, notes

    PlaybackBuffer.read = spy  # type: ignore[method-assign]
    try:
        items = talk(fake)
    finally:
        PlaybackBuffer.read = original_read  # type: ignore[method-assign]
    prompts = [m[-1].content for m in fake.llm.prompts]
    assert "hello" in prompts and "hello there" in prompts, prompts  # a speculation at the pause, then the final
    played = np.concatenate(heard)
    assert played.max() == pytest.approx(0.1), "audio of the discarded speculation reached the speaker"
    assert (played > 0.05).sum() >= 16000 // 5  # the reply itself was played
    history = [(i.role, i.text) for i in items if isinstance(i, a.AppendHistory)]
    assert history == [("user", "hello there"), ("assistant", "Hi there. Nice to hear you.")]


def test_speculations_are_marked_used_or_discarded_in_the_spans():
    fake = engines()
    fake.llm = WordsLlm()
    spans: list = []
    talk(fake, spans=spans)
    marks = [s for s in spans if s.stage == Stage.SPECULATION]
    assert [m.meta["used"] for m in marks] == [False, True], [m.meta for m in marks]
    assert marks[0].meta["why"] == "words_changed"
    wasted = marks[0].meta["number"]
    assert all(s.status == "cancelled" or s.finished_at <= marks[0].finished_at + 0.5
               for s in spans if s.meta.get("speculation") == wasted)


# ---- why the turn ended -------------------------------------------------------------------------------------

def test_each_turn_says_why_it_ended():
    from app.ui.view_models import end_of_turn_label

    items = talk(engines())
    commit = next(i for i in items if isinstance(i, a.CommitReply))
    assert commit.reason == "complete" and commit.audio_p == pytest.approx(0.9) and commit.text_log10 is None
    assert commit.waited_s >= 0 and commit.at is not None
    assert end_of_turn_label({"reason": "text_sure", "audio_p": 0.04, "text_log10": -0.005}) == \
        "turn over: text_sure (Smart Turn 0.04, text -0.01)"
    assert end_of_turn_label({"reason": "text_sure", "audio_p": 0.83, "text_log10": -0.01,
                              "audio_after_commit": True}) == "turn over: text_sure (Smart Turn 0.83 later, text -0.01)"
    assert end_of_turn_label({"reason": "complete", "audio_p": 0.9, "text_log10": None}) == \
        "turn over: complete (Smart Turn 0.90)"


def test_the_naive_pipeline_does_nothing_before_the_end_of_turn():
    """`turn.pipeline = naive` (the bench's baseline): no decode at the pause onset, no cache warm-up, no
    speculation: the reply's prompt is evaluated only once the turn is committed, on Smart Turn alone."""
    from app.config import from_dict

    spans: list = []
    items = talk(engines(), spans=spans, cfg=from_dict({"turn": {"pipeline": "naive"}}))
    commit = next(i for i in items if isinstance(i, a.CommitReply))
    assert commit.reason == "complete" and commit.text_log10 is None
    labels = {s.label for s in spans}
    assert "asr-pause" not in labels and "warm-cache" not in labels
    prefill = next(s for s in spans if s.label == "prefill")
    assert commit.at is not None and prefill.queued_at >= commit.at  # asked only after the commit
    history = [(i.role, i.text) for i in items if isinstance(i, a.AppendHistory)]
    assert history == [("user", "hello there"), ("assistant", "Hi there. Nice to hear you.")]
