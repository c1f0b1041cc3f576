"""Faults in a real conversation: an engine that raises in the middle of a turn (each stage, real engines) drops that
turn and the next turn works; a storm of 20 interruptions in 10 s neither deadlocks nor leaks units and ends
listening; the logs carry timings and events, never words. Models: tests/test_faults_models.py; the sound device:
tests/test_faults_devices.py."""
from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time

import numpy as np
import pytest

from app.config import Config, from_dict
from app.conversation import actions as a
from app.conversation import events as e
from app.conversation.state import Phase, TurnSettings
from app.headless.script import UserTurn
from engines.audio_io import read_audio
from tests.conftest import ROOT, SPEECH, speech_manifest
from tests.wer import wer

RATE = 16000
CODE_WORDS = {w for d in ("app", "engines", "scheduler") for p in (ROOT / d).rglob("*.py")
              for w in re.findall(r"[a-z]+", p.read_text(encoding="utf-8").lower())}


def reference(name: str) -> str:
    return next(r["transcript"] for r in speech_manifest() if r["file"] == name)


def clip(name: str) -> np.ndarray:
    return read_audio(SPEECH / name)


# ---- fault injection ------------------------------------------------------------------------------------------
class InjectedFault(RuntimeError):
    pass


class Trigger:
    """Counts the calls it guards and raises once, on the first call `when()` says yes to. The message carries the
    call's text on purpose (an engine's error may quote what it was given): no log line may repeat it."""

    def __init__(self, when=lambda: True):
        self.when, self.calls, self.fired = when, 0, False

    def check(self, args: tuple) -> None:
        self.calls += 1
        if not self.fired and self.when():
            self.fired = True
            text = " ".join(str(x) for x in args if isinstance(x, str))
            raise InjectedFault(f"injected fault while working on {text!r}")


class Faulty:
    """An engine (or a generation) whose `method` goes through `trigger`; everything else is the engine's."""

    def __init__(self, engine, method: str, trigger: Trigger):
        self._engine, self._method, self._trigger = engine, method, trigger

    def __getattr__(self, name):
        value = getattr(self._engine, name)
        if name != self._method:
            return value

        def guarded(*args, **kwargs):
            self._trigger.check(args)
            return value(*args, **kwargs)

        return guarded


class FaultyLlm:
    """The generator, whose generations go through `trigger` in `method` (prefill or step)."""

    def __init__(self, llm, method: str, trigger: Trigger):
        self._llm, self._method, self._trigger = llm, method, trigger

    def __getattr__(self, name):
        return getattr(self._llm, name)

    def start(self, messages, max_tokens=256):
        return Faulty(self._llm.start(messages, max_tokens), self._method, self._trigger)


# ---- running a real conversation and looking inside it -----------------------------------------------------------
@dataclasses.dataclass
class Run:
    result: object = None
    items: list = dataclasses.field(default_factory=list)  # every event, action and phase the session notified
    timed: list = dataclasses.field(default_factory=list)  # (perf_counter, item) for the same
    at_end: dict = dataclasses.field(default_factory=dict)  # the session and scheduler as the script ended
    spans: object = None  # the scheduler's span log

    def of(self, kind) -> list:
        return [item for item in self.items if isinstance(item, kind)]


def snapshot(session) -> dict:
    scheduler = session.scheduler
    outstanding = scheduler.outstanding()
    return {"phase": session.state.phase, "idle": session.idle.is_set(),
            "busy": [h for h in outstanding if h.unit.stage != "vad"],  # the VAD judges every block, always
            "cancelled_left": [h for h in outstanding if h.unit.turn >= 0 and scheduler.is_turn_cancelled(h.unit.turn)],
            "replies": dict(session._replies), "speculations": dict(session._speculation),
            "playback_s": session.playback.lead_s()}


def converse(engines, cfg: Config, turns: list[UserTurn], monkeypatch, timeout_s: float = 240) -> Run:
    """`run_conversation`, with the session watched: every notification kept, and its state and the scheduler's
    outstanding units read when the script ends (before the scheduler closes)."""
    from app.headless import runner

    run = Run()

    class Watched(runner.Session):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.subscribe(run.items.append)
            self.subscribe(lambda item: run.timed.append((time.perf_counter(), item)))

        def stop(self):
            run.at_end, run.spans = snapshot(self), self.scheduler.spans
            super().stop()

    monkeypatch.setattr(runner, "Session", Watched)
    run.result = runner.run_conversation(engines, cfg, turns, timeout_s=timeout_s)
    return run


def assert_clean_end(run: Run) -> None:
    """Listening and idle as the script ended; no unit of a cancelled turn (or any but the VAD's) queued or running;
    no reply or speculation left."""
    end = run.at_end
    assert not run.result.notes, run.result.notes
    assert end["phase"] is Phase.LISTENING and end["idle"], end
    assert end["cancelled_left"] == [] and end["busy"] == [], end
    assert end["replies"] == {} and end["speculations"] == {}, end


def conversation_words(run: Run) -> set[str]:
    texts = [m["content"] for m in run.result.history if m["role"] != "system"]
    texts += [x.text for x in run.of(e.TranscriptFinal) + run.of(e.ReplyAudio)]
    return {w for t in texts for w in re.findall(r"[a-z']+", t.lower())}


def assert_no_words_logged(caplog, run: Run) -> None:
    """No word of what was said (a word the code itself never writes) and no two of its words in a row."""
    logged = "\n".join(caplog.text.splitlines() + [r.getMessage() for r in caplog.records]).lower()
    logged_words = set(re.findall(r"[a-z']+", logged))
    said = conversation_words(run)
    assert said, "nothing was said"
    leaked = {w for w in said if len(w) >= 3 and w in logged_words and w not in CODE_WORDS}
    assert not leaked, f"words of the conversation in the logs: {sorted(leaked)}"
    texts = [m["content"] for m in run.result.history if m["role"] != "system"]
    for text in texts:
        words = re.findall(r"[a-z']+", text.lower())
        for pair in zip(words, words[1:]):
            assert not re.search(rf"\b{pair[0]}\W+{pair[1]}\b", logged), f"{' '.join(pair)!r} is in the logs"


@pytest.fixture
def debug_logs(caplog):
    for name in (None, "cadence", "scheduler"):  # the root, every cadence.* logger and the scheduler's
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.fixture(scope="module")
def engines():
    from app.engine_factory import build_engines

    return build_engines(Config())


# ---- an engine raising mid-turn ---------------------------------------------------------------------------------
def inject(engines, stage: str):
    """(engines with one faulty stage, its trigger, whether the fault falls after the reply was committed)."""
    trigger = Trigger()
    if stage == "asr":  # decoding the end of the first turn
        return dataclasses.replace(engines, asr=Faulty(engines.asr, "finish", trigger)), trigger, False
    if stage == "turn":  # Smart Turn's verdict on the first turn
        return dataclasses.replace(engines, turn=Faulty(engines.turn, "probability_complete", trigger)), trigger, False
    if stage == "llm-prefill":  # the speculative prefill of the first turn (the reply may be committed meanwhile)
        return dataclasses.replace(engines, llm=FaultyLlm(engines.llm, "prefill", trigger)), trigger, None
    if stage == "llm":  # the first token of the first reply: nothing was heard yet
        return dataclasses.replace(engines, llm=FaultyLlm(engines.llm, "step", trigger)), trigger, True
    if stage == "tts":  # the reply's second segment, while its first one plays
        trigger.when = lambda: trigger.calls >= 2
        return dataclasses.replace(engines, tts=Faulty(engines.tts, "synthesize", trigger)), trigger, True
    raise ValueError(stage)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["asr", "turn", "llm-prefill", "llm", "tts"])
def test_an_engine_raising_mid_turn_drops_that_turn_and_the_next_works(engines, stage, monkeypatch, debug_logs):
    faulty, trigger, committed = inject(engines, stage)
    cfg = from_dict({"llm": {"max_reply_tokens": 40}})
    # a committed reply fails on a question whose answer takes more than one segment
    first = read_audio(ROOT / "assets/bench/q05_long.wav") if committed else clip("en_goforward.wav")
    turns = [UserTurn(first, 1.0), UserTurn(clip("en_forever.wav"), 1.0)]
    run = converse(faulty, cfg, turns, monkeypatch)
    assert trigger.fired, f"the {stage} fault never fired"
    failed = run.of(e.EngineFailed)
    stages = {"asr": "asr", "turn": "turn", "llm-prefill": "llm", "llm": "reply", "tts": "reply"}
    assert failed and failed[0].reason == "InjectedFault" and failed[0].stage == stages[stage], failed
    dropped = failed[0].turn_id
    assert any(c.turn_id == dropped for c in run.of(a.CancelReply)), "the failed turn was not cancelled"
    assert any(x.kind == "engine_failed" for x in run.of(a.LogEvent))
    was_committed = any(c.turn_id == dropped for c in run.of(a.CommitReply))
    assert committed in (None, was_committed), f"committed: {was_committed}"
    records, history = run.result.records, [m for m in run.result.history if m["role"] != "system"]
    if was_committed:  # the faulty reply ends as if interrupted: only what was heard of it is kept
        assert len(records) == 2 and records[0].turn == dropped and records[0].interrupted, records
        spoken = " ".join(x.text for x in run.of(e.ReplyAudio) if x.turn_id == dropped)
        assert spoken.startswith(records[0].reply), (records[0].reply, spoken)
        if stage == "tts":
            assert records[0].reply and history[1] == {"role": "assistant", "content": records[0].reply}
    else:  # dropped before any reply: the turn left no trace in the history
        assert len(records) == 1, [r.transcript for r in records]
        assert len(history) == 2, history
    # the next turn: the right transcript and a whole spoken reply
    last = records[-1]
    assert last.turn != dropped and not last.interrupted and last.reply.strip(), last
    assert wer(reference("en_forever.wav"), last.transcript) <= 0.2, last.transcript
    assert last.first_audio_at is not None and last.stages_ms["v2v"] is not None
    assert history[-1] == {"role": "assistant", "content": last.reply}
    assert history[-2]["role"] == "user" and history[-2]["content"].endswith(last.transcript)
    assert_clean_end(run)
    assert_no_words_logged(debug_logs, run)


# ---- a barge-in storm -----------------------------------------------------------------------------------------
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
    from app.conversation.reply import LATER_CHUNK_STEP, Reply
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


# ---- logs: timings and events, never words --------------------------------------------------------------------
@pytest.mark.slow
def test_the_logs_of_a_real_turn_carry_timings_and_events_not_words(engines, monkeypatch, debug_logs):
    run = converse(engines, from_dict({"llm": {"max_reply_tokens": 32}}), [UserTurn(clip("en_arctic_a0024.wav"), 1.0)],
                   monkeypatch)
    record = run.result.records[0]
    assert wer(reference("en_arctic_a0024.wav"), record.transcript) <= 0.2 and record.reply, record
    kinds = [r.getMessage().split()[0] for r in debug_logs.records if r.name == "cadence.session"]
    assert {"user_paused", "turn_verdict", "transcript_final", "turn_end", "first_audio", "reply_done"} <= set(kinds)
    assert any(re.search(r"\bafter_stop_s=\d+\.\d{3}\b", r.getMessage()) for r in debug_logs.records)
    assert_no_words_logged(debug_logs, run)
