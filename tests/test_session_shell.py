"""The session's shell with small fake engines (no models; what is tested is the wiring, not speech): the optional
abilities are read once from `Engines`, a language model without a text score still answers on the audio verdict, a
stepped recognizer decodes at the onset of the pause, a failing VAD unit is logged (not dropped silently) and the
conversation goes on, and the composition root leaves no thread behind. Real engines: test_headless.py and
test_faults.py."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from app.audio.headless import HeadlessDuplex, array_source
from app.audio.playback import PlaybackBuffer
from app.config import Config
from app.conversation import actions as a
from app.conversation.session import Notification
from app.runtime import build_conversation
from engines.engine_set import Engines
from engines.protocols import (
    AudioChunk,
    GenerationStep,
    Message,
    Recognizer,
    SteppedRecognizer,
    TextTurnScorer,
    VoiceChoice,
)

RATE = 16000


class LoudnessVad:
    """Speech is any block louder than -40 dBFS; block `fail_at` raises (a broken VAD unit)."""

    frame_samples = 512

    def __init__(self, fail_at: int = -1):
        self.calls, self.fail_at = 0, fail_at

    def probability(self, frame: np.ndarray) -> float:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("the VAD broke")
        return 0.9 if float(np.sqrt(np.mean(frame ** 2))) > 0.01 else 0.0

    def reset(self) -> None:
        pass


class SureTurn:
    def probability_complete(self, turn_audio: np.ndarray) -> float:
        return 0.9


class SteppedAsr:
    name = "fake-asr"

    def __init__(self) -> None:
        self.heard, self.steps = 0, 0

    def start(self) -> None:
        self.heard = 0

    def accept(self, chunk: np.ndarray) -> None:
        self.heard += len(chunk)

    def partial(self) -> str:
        return "hello" if self.heard else ""

    def finish(self) -> str:
        return "hello there" if self.heard else ""

    def wants_step(self) -> bool:
        return False  # only the pause asks for a step here

    def step(self) -> bool:
        self.steps += 1
        return True


class ScriptedGeneration:
    prompt_tokens, reused_tokens = 10, 0

    def __init__(self, words: list[str]):
        self.words = words

    def prefill(self) -> None:
        pass

    def step(self, max_tokens: int) -> GenerationStep:
        taken, self.words = self.words[:max_tokens], self.words[max_tokens:]
        return GenerationStep("".join(taken), len(taken), not self.words)

    def cancel(self) -> None:
        self.words = []


class PlainLlm:
    """A language model that gives no text end-of-utterance score (as a remote server may not)."""

    name = "fake-llm"

    def __init__(self) -> None:
        self.prompts: list[Sequence[Message]] = []

    def start(self, messages: Sequence[Message], max_tokens: int = 256) -> ScriptedGeneration:
        self.prompts.append(messages)
        return ScriptedGeneration(["Hi ", "there. ", "Nice ", "to ", "hear ", "you."])


class Beep:
    name, sample_rate = "fake-tts", RATE

    def synthesize(self, text: str) -> Iterator[AudioChunk]:
        yield AudioChunk(np.full(RATE // 5, 0.1, dtype=np.float32), RATE)


def engines(vad: LoudnessVad | None = None) -> Engines:
    return Engines(vad or LoudnessVad(), SureTurn(), SteppedAsr(), PlainLlm(), Beep(), names={"llm": "fake"})


def talk(engines: Engines, seconds_after: float = 2.5, spans: list | None = None,
         cfg: Config | None = None, records: list | None = None) -> list[Notification]:
    """0.3 s of silence, 1 s of 'speech' (a loud tone), then silence; every notification of the session (and
    every span, into `spans`)."""
    t = np.arange(RATE) / RATE
    audio = np.concatenate([np.zeros(int(0.3 * RATE)), 0.3 * np.sin(2 * np.pi * 220 * t),
                            np.zeros(int(seconds_after * RATE))]).astype(np.float32)
    items: list[Notification] = []
    devices: list[HeadlessDuplex] = []

    def open_device(playback: PlaybackBuffer) -> HeadlessDuplex:
        devices.append(HeadlessDuplex(array_source(audio), playback, RATE))
        return devices[0]

    conversation = build_conversation(cfg or Config(), engines, open_device, cancel_echo=False,
                                      observers=[items.append])
    if spans is not None:
        conversation.scheduler.spans.subscribe(spans.append)
    if records is not None:
        conversation.collector.listeners.append(records.append)
    conversation.start()
    try:
        assert devices[0].input_over.wait(30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not conversation.session.idle.is_set():
            time.sleep(0.05)
        assert conversation.session.outstanding() == {"replies": [], "speculations": []}
    finally:
        conversation.stop()
    return items


def test_abilities_are_read_once_from_the_engines():
    fake = engines()
    assert isinstance(fake.asr, SteppedRecognizer) and fake.stepper is fake.asr
    assert not isinstance(fake.llm, TextTurnScorer) and fake.scorer is None
    assert not isinstance(fake.tts, VoiceChoice)
    assert (fake.abilities.text_turn_score, fake.abilities.stepped_asr, fake.abilities.voices) == (False, True, False)
    assert fake.missing_roles() == []
    assert Engines(*[object()] * 5).missing_roles() == ["vad", "turn", "asr", "llm", "tts"]
    assert isinstance(fake.asr, Recognizer)


def test_without_a_text_score_the_audio_verdict_answers(caplog):
    caplog.set_level(logging.DEBUG, logger="cadence.session")
    fake = engines()
    items = talk(fake)
    history = [item for item in items if isinstance(item, a.AppendHistory)]
    said = [(h.role, h.text) for h in history]
    assert said == [("user", "hello there"), ("assistant", "Hi there. Nice to hear you.")]
    ends = [r.getMessage() for r in caplog.records if r.getMessage().startswith("turn_end")]
    assert len(ends) == 1 and "reason=complete" in ends[0] and "text_log10=none" in ends[0], ends
    assert fake.asr.steps >= 1, "the stepped recognizer did not decode at the onset of the pause"
    assert fake.llm.prompts and fake.llm.prompts[-1][-1] == Message("user", "hello there")


def test_a_failing_vad_unit_is_logged_and_the_conversation_goes_on(caplog):
    caplog.set_level(logging.WARNING, logger="cadence.session")
    items = talk(engines(LoudnessVad(fail_at=3)))
    failures = [r for r in caplog.records if "the VAD failed" in r.getMessage()]
    assert len(failures) == 1 and "RuntimeError" in failures[0].getMessage()
    assert any(isinstance(item, a.CommitReply) for item in items), "no reply after the VAD failure"


def test_a_conversation_leaves_no_thread_behind():
    before = {t.ident for t in threading.enumerate()}
    talk(engines(), seconds_after=1.5)
    time.sleep(0.2)
    left = [t.name for t in threading.enumerate() if t.ident not in before and t.name != "echo-delay"]
    assert left == [], left


class GpuBeep(Beep):
    """A voice whose device work is asynchronous (as on a GPU): each call's "kernels" end `lag` s after it."""

    asynchronous = True
    lag = 0.03

    def __init__(self) -> None:
        self.until = 0.0
        self.syncs = 0

    def synthesize(self, text: str) -> Iterator[AudioChunk]:
        self.until = time.perf_counter() + self.lag
        yield from super().synthesize(text)

    def synchronize(self) -> None:
        self.syncs += 1
        time.sleep(max(0.0, self.until - time.perf_counter()))


def test_a_conversation_ends_its_device_units_on_the_asynchronous_engines_sync():
    cpu = engines()
    assert cpu.abilities.device_sync is False and cpu.device_barrier() is None
    voice = GpuBeep()
    gpu = Engines(LoudnessVad(), SureTurn(), SteppedAsr(), PlainLlm(), voice, names={"llm": "fake"})
    assert gpu.abilities.device_sync and gpu.asynchronous == (voice,)
    spans: list = []
    talk(gpu, spans=spans)
    tts = [s for s in spans if s.stage == "tts" and s.status == "ok"]
    assert tts and voice.syncs >= len(tts)
    assert all(s.meta["sync_ms"] >= 0 for s in spans if s.lane == "device")
    assert all("sync_ms" not in s.meta for s in spans if s.lane != "device")
    assert max(s.meta["sync_ms"] for s in tts) >= GpuBeep.lag * 1000 * 0.5  # the barrier waited for the "kernels"
    assert {s.lane for s in spans if s.stage == "turn"} == {"cpu"}  # beside a GPU, Smart Turn has its own lane


def test_without_a_gpu_smart_turn_takes_its_turn_on_the_device_lane():
    """On a CPU-only machine the device lane is the cores: Smart Turn's thread must not run beside it."""
    spans: list = []
    talk(engines(), spans=spans)
    assert {s.lane for s in spans if s.stage == "turn"} == {"device"}
    assert {s.lane for s in spans if s.stage == "vad"} == {"cpu"}


class SlowPromptLlm(PlainLlm):
    """The system prompt takes a while to evaluate (as on a CPU); `fail` makes that evaluation raise."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.fail, self.evaluated = fail, threading.Event()

    def start(self, messages: Sequence[Message], max_tokens: int = 256) -> ScriptedGeneration:
        generation, llm = super().start(messages, max_tokens), self

        class Slow(ScriptedGeneration):
            def prefill(self) -> None:
                time.sleep(0.4)
                if llm.fail:
                    raise ValueError("the model broke")
                llm.evaluated.set()
        return Slow(generation.words)


@pytest.mark.parametrize("fail", [False, True], ids=["warmed", "warming failed"])
def test_the_session_is_ready_once_the_system_prompt_is_cached(fail):
    llm = SlowPromptLlm(fail)
    silence = np.zeros(3 * RATE, np.float32)
    conversation = build_conversation(Config(), Engines(LoudnessVad(), SureTurn(), SteppedAsr(), llm, Beep()),
                                      lambda playback: HeadlessDuplex(array_source(silence), playback, RATE),
                                      cancel_echo=False)
    conversation.start()
    try:
        assert not conversation.session.ready.is_set(), "ready before the system prompt was evaluated"
        assert conversation.session.ready.wait(5), "never ready"
        assert llm.evaluated.is_set() is not fail
    finally:
        conversation.stop()


class SteadyAsr(SteppedAsr):
    """Hears at the pause what it hears at the end: the speculation made at the pause is the reply."""

    def partial(self) -> str:
        return self.finish()


class ScoringLlm(PlainLlm):
    """A language model that reads a text score (`score`) from a slow prefill (0.4 s, as on a CPU), and whose first
    chunk takes 0.2 s: Smart Turn is asked for while the prefill runs and is queued while that chunk runs."""

    def __init__(self, score: float) -> None:
        super().__init__()
        self.score = score

    def start(self, messages: Sequence[Message], max_tokens: int = 256) -> ScriptedGeneration:
        generation, llm = super().start(messages, max_tokens), self

        class Scored(ScriptedGeneration):
            first = True

            def prefill(self) -> None:
                time.sleep(0.4)

            def eou_score(self) -> float:
                return llm.score

            def step(self, max_tokens: int) -> GenerationStep:
                if self.first:
                    self.first = False
                    time.sleep(0.2)
                return super().step(max_tokens)
        return Scored(generation.words)

    def end_of_utterance_score(self, messages_until_user_text: Sequence[Message]) -> float:
        return self.score


@pytest.mark.parametrize("score", [-0.01, -0.5], ids=["surely complete", "likely complete"])
def test_smart_turn_waits_for_the_first_audio_only_when_the_words_settle_the_turn(score):
    """CPU-only: Smart Turn shares the device lane with the LLM. A surely complete text ends the turn without its
    verdict, so it runs after the reply's first voiced segment (and its p still reaches the turn's record); a text
    less than sure needs the verdict, which then comes before that segment is voiced."""
    spans: list = []
    records: list = []
    assert isinstance(ScoringLlm(score), TextTurnScorer)
    talk(Engines(LoudnessVad(), SureTurn(), SteadyAsr(), ScoringLlm(score), Beep()), spans=spans, records=records)
    verdict = next(s for s in spans if s.stage == "turn" and s.status == "ok")
    voice = min((s for s in spans if s.stage == "tts" and s.status == "ok"), key=lambda s: s.started_at)
    decision = records[0].decision
    if score > -0.2:
        assert verdict.started_at >= voice.finished_at, "Smart Turn ran before the first segment was voiced"
        assert decision["reason"] == "text_sure" and decision["audio_after_commit"] is True
        assert decision["audio_p"] == pytest.approx(0.9)
    else:
        assert verdict.finished_at <= voice.started_at, "the verdict the turn needed came after the first voice"
        assert decision["reason"] == "complete" and "audio_after_commit" not in decision
