"""A barge-in storm: 20 interruptions within 10 s, over the pure turn-taking core and over a real conversation
(real engines, real speech): no deadlock, no unit of a cancelled turn left queued or running, and it ends
listening; a cancelled reply's LLM chunk stops within a few tokens."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from app.config import from_dict
from app.conversation import actions as a
from app.conversation import events as e
from app.conversation.state import Phase, TurnSettings
from app.headless.script import UserTurn
from engines.audio_io import read_audio
from tests.conftest import ROOT
from tests.conversation_watch import RATE, assert_clean_end, assert_no_words_logged, clip, converse


def test_a_storm_of_20_barge_ins_over_the_pure_core():
    """20 confirmed interruptions in 10 s of session time, each with the old turn's late results arriving after
    it: every reply is cancelled and flushed once, nothing of a cancelled turn moves the state, and the last reply
    ends in LISTENING."""
    from app.conversation.state import ConversationState, step

    state, live, cancelled, interrupted = ConversationState(settings=TurnSettings()), set(), set(), 0

    def feed(event):
        nonlocal state
        before = state
        state, actions = step(state, event)
        for act in actions:
            if isinstance(act, a.CommitReply):
                assert act.turn_id not in cancelled
                live.add(act.turn_id)
            elif isinstance(act, a.CancelReply):
                cancelled.add(act.turn_id)
                live.discard(act.turn_id)
        return before, actions

    def reply(t0: float) -> int:
        """The paused user's turn gets every signal at once: committed, then audible."""
        turn = state.turn_id
        for event in (e.TurnVerdict(t0, turn, True, 0.9), e.TranscriptFinal(t0 + 0.01, turn, "stop"),
                      e.EndOfUtteranceScore(t0 + 0.02, turn, -0.1)):
            feed(event)
        assert state.phase is Phase.RESPONDING and turn in live
        feed(e.ReplyAudio(t0 + 0.03, turn, 0, "Sure, here is a long answer.", 2.0))
        feed(e.PlaybackProgress(t0 + 0.04, turn, 0.01))
        assert state.phase is Phase.SPEAKING
        return turn

    feed(e.SpeechStarted(0.0))
    feed(e.SpeechStopped(0.4, speech_s=0.2))
    turn = reply(0.41)
    for i in range(20):
        t = 0.5 + i * 0.5
        _, actions = feed(e.SpeechStarted(t))
        assert actions == (a.PausePlayback(turn),)  # silent at once
        _, actions = feed(e.Tick(t + 0.06))
        assert actions == ()
        _, actions = feed(e.SpeechStopped(t + 0.44, speech_s=0.31))  # long enough: an interruption
        assert [type(x) for x in actions[:3]] == [a.CancelReply, a.FlushPlayback, a.AppendHistory]
        assert actions[0].turn_id == turn and actions[2].interrupted and state.phase is Phase.USER_PAUSED
        interrupted += 1
        for late in (e.ReplyAudio(t + 0.44, turn, 1, "more", 1.0), e.PlaybackProgress(t + 0.44, turn, 3.0),
                     e.ReplyFinished(t + 0.44, turn), e.PlaybackFinished(t + 0.44, turn),
                     e.EngineFailed(t + 0.44, turn, "tts", "X"), e.TurnVerdict(t + 0.44, turn, True, 0.9)):
            before, actions = feed(late)
            assert state == before and actions == (), late  # a cancelled turn's results are stale
        turn = reply(t + 0.45)
    assert interrupted == 20 and (t + 0.44) - 0.5 <= 10.0 and len(cancelled) == 20  # all within 10 s
    feed(e.ReplyFinished(11.0, turn))
    feed(e.PlaybackFinished(11.1, turn))
    live.discard(turn)
    assert state.phase is Phase.LISTENING and state.barge_in_at is None and not live


def test_outstanding_lists_what_is_queued_or_running_and_nothing_of_a_cancelled_turn(sched):
    from scheduler import Priority, WorkUnit

    gate = threading.Event()
    running = sched.submit(WorkUnit(lambda tok: gate.wait(5), "llm", 1, Priority.LLM))
    assert wait_until(lambda: running.state.name == "RUNNING")
    queued = [sched.submit(WorkUnit(lambda tok: None, stage, turn, p)) for stage, turn, p in
              (("tts", 1, Priority.TTS), ("asr", 2, Priority.ASR))]
    assert sched.outstanding() == [running, queued[1], queued[0]]  # running first, then in run order
    assert sched.outstanding(turn=1) == [running, queued[0]]
    sched.cancel_turn(1, wait=False)
    assert sched.outstanding(turn=1) == [running]  # queued ones dropped; the running one has its token set
    gate.set()
    assert wait_until(lambda: sched.outstanding(turn=1) == []) and sched.wait_idle(5) and sched.outstanding() == []


def test_a_cancelled_reply_stops_its_llm_chunk_within_a_few_tokens(sched):
    """A barge-in cancels the reply's turn: the LLM chunk running then (up to 96 tokens, seconds of decoding on a
    busy CPU) stops at its next inner step, so the user's next turn does not wait behind it."""
    from app.audio.playback import PlaybackBuffer
    from app.conversation.reply import Reply
    from app.conversation.reply_text import LATER_CHUNK_STEP
    from engines.protocols import AudioChunk, GenerationStep

    class SlowGeneration:  # 10 ms a token; a sentence end every 12 tokens
        tokens = 0

        def step(self, n: int) -> GenerationStep:
            time.sleep(0.01 * n)
            text = "".join(" word." if (self.tokens + i + 1) % 12 == 0 else " word" for i in range(n))
            self.tokens += n
            return GenerationStep(text, n, False)

    class Voice:
        sample_rate = RATE

        def synthesize(self, text: str):
            yield AudioChunk(np.full(RATE // 10, 0.1, np.float32), RATE)

    generation, finished = SlowGeneration(), []
    reply = Reply(sched, 7, lambda: generation, Voice(), PlaybackBuffer(RATE), on_segment=lambda *args: None,
                  on_finished=finished.append, on_error=lambda exc: None).start()
    assert wait_until(lambda: generation.tokens >= 60 and any(
        h.unit.stage == "llm" and h.state.name == "RUNNING" for h in sched.outstanding(turn=7)))
    before = generation.tokens
    reply.cancel()
    assert wait_until(lambda: finished) and finished[0].status == "cancelled"
    assert generation.tokens - before <= 2 * LATER_CHUNK_STEP, generation.tokens - before  # the step under way
    assert sched.outstanding(turn=7) == []


def wait_until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.01)
    return condition()


def storm(vad, n: int = 20, period_s: float = 0.47) -> np.ndarray:
    """`n` bursts of real speech in less than 10 s: first "ten of clubs" (long enough to interrupt a reply), then
    one every `period_s`: 0.16 s windows of fluent speech that the VAD hears as speech from end to end, each
    followed by silence longer than the VAD's pause."""
    frame = vad.frame_samples

    def voiced(audio: np.ndarray) -> np.ndarray:
        vad.reset()
        out = np.array([vad.probability(audio[i:i + frame]) > 0.5 for i in range(0, len(audio) - frame, frame)])
        vad.reset()
        return out

    speech = np.concatenate([clip(c) for c in ("en_LJ001-0004.wav", "en_LJ001-0006.wav", "en_mr_quilter.wav")])
    first, voiced_speech = clip("en_cards_001.wav"), voiced(speech)
    spoken = np.nonzero(voiced(first))[0]
    first = first[max(0, spoken[0] - 3) * frame:(spoken[-1] + 1) * frame]
    out = np.zeros(int(n * period_s * RATE) + len(first), np.float32)
    out[:len(first)] = first
    pos, width = 0, 5  # in frames: 0.16 s
    for i in range(1, n):
        while not voiced_speech[pos:pos + width].all():
            pos += 1
        start = len(first) + int((i - 1) * period_s * RATE) + int(0.3 * RATE)
        out[start:start + width * frame] = speech[pos * frame:(pos + width) * frame]
        pos += width + 3
    return out[:start + width * frame]


@pytest.mark.slow
def test_a_storm_of_20_interruptions_in_10_s_ends_listening_with_no_units_left(engines, monkeypatch, debug_logs):
    """A long question; 0.5 s into the reply, 20 bursts of speech in 10 s: the reply is cut, and each later burst
    lands while the agent pauses its voice, waits for a verdict or prefills a speculative reply (thrown away at
    the next burst)."""
    cfg = from_dict({"llm": {"max_reply_tokens": 40}})
    question = read_audio(ROOT / "assets/bench/q05_long.wav")
    turns = [UserTurn(question, 1.0), UserTurn(storm(engines.vad), 1.0, barge_in_s=0.5)]
    started = time.monotonic()
    run = converse(engines, cfg, turns, monkeypatch, timeout_s=150)
    assert time.monotonic() - started < 150
    onsets = [x.t for x in run.of(e.SpeechStarted)][1:]  # the storm's
    assert len(onsets) >= 12 and onsets[-1] - onsets[0] <= 10.0, onsets  # a burst may run into the next
    assert any(x.kind == "barge_in" for x in run.of(a.LogEvent)), "the reply was never interrupted"
    assert run.result.records[0].interrupted and run.of(a.PausePlayback)
    assert len(run.of(a.ContinueTranscription)) >= 8  # how many depends on the CPU's pace
    # a turn the user resumed is superseded: none of its work starts once the session knows (it used to queue up,
    # stale ASR and LLM cache warm-ups delaying the last reply by 15-20 s)
    resumed_at = {act.previous_turn_id: t for t, act in run.timed if isinstance(act, a.ContinueTranscription)}
    late = [s for s in run.spans.snapshot() if s.turn in resumed_at and s.started_at is not None
            and s.started_at > resumed_at[s.turn] + 0.2]
    assert not late, late
    assert_clean_end(run)  # no unit of any cancelled turn queued or running, no reply or speculation left
    assert_no_words_logged(debug_logs, run)
