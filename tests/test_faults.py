"""Faults in a real conversation: an engine that raises in the middle of a turn (each stage, real engines) drops that
turn and the next turn works; the logs carry timings and events, never words. The barge-in storm:
tests/test_barge_in_storm.py; models: tests/test_faults_models.py; the sound device: tests/test_faults_devices.py."""
from __future__ import annotations

import dataclasses
import re
import threading

import pytest

from app.audio.playback import PlaybackBuffer
from app.config import from_dict
from app.conversation import actions as a
from app.conversation import events as e
from app.headless.script import UserTurn
from engines.audio_io import read_audio
from tests.conftest import ROOT
from tests.conversation_watch import assert_clean_end, assert_no_words_logged, clip, converse, reference
from tests.wer import clip_limit, wer


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


# ---- an engine raising mid-turn ---------------------------------------------------------------------------------
playing = threading.Event()  # the agent's voice has started playing (the TTS fault waits for it)


def inject(engines, stage: str):
    """(engines with one faulty stage, its trigger, whether the fault falls after the reply was committed)."""
    trigger = Trigger()
    if stage == "asr":  # decoding the end of the first turn
        return dataclasses.replace(engines, asr=Faulty(engines.asr, "finish", trigger)), trigger, False
    if stage == "turn":  # Smart Turn's verdict on the first turn
        return dataclasses.replace(engines, turn=Faulty(engines.turn, "probability_complete", trigger)), trigger, False
    if stage == "llm-prefill":  # the speculative prefill of the first turn (the reply may be committed meanwhile)
        return dataclasses.replace(engines, llm=FaultyLlm(engines.llm, "prefill", trigger)), trigger, None
    if stage == "llm":  # the first token of the first reply (written in the pause, or once committed): none heard
        return dataclasses.replace(engines, llm=FaultyLlm(engines.llm, "step", trigger)), trigger, None
    if stage == "tts":  # a later segment of the reply, while its first one plays
        trigger.when = playing.is_set
        return dataclasses.replace(engines, tts=Faulty(engines.tts, "synthesize", trigger)), trigger, True
    raise ValueError(stage)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["asr", "turn", "llm-prefill", "llm", "tts"])
def test_an_engine_raising_mid_turn_drops_that_turn_and_the_next_works(engines, stage, monkeypatch, debug_logs):
    playing.clear()
    read = PlaybackBuffer.read

    def read_and_tell(self, frames):  # the speaker's side: the agent's first audible sample sets `playing`
        out, notes = read(self, frames)
        if notes and out.any():
            playing.set()
        return out, notes

    monkeypatch.setattr(PlaybackBuffer, "read", read_and_tell)
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
    assert wer(reference("en_forever.wav"), last.transcript) <= clip_limit(reference("en_forever.wav"), 0.2), \
        last.transcript
    assert last.first_audio_at is not None and last.stages_ms["v2v"] is not None
    assert history[-1] == {"role": "assistant", "content": last.reply}
    assert history[-2]["role"] == "user" and history[-2]["content"].endswith(last.transcript)
    assert_clean_end(run)
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
