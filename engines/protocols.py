"""The small protocols every engine implements, and the optional abilities some engines add.

Each call is one bounded step (one VAD frame, one Smart Turn call, one ASR chunk, N LLM tokens, one TTS segment) so
the scheduler can interleave them; engines know nothing about threads or scheduling. Audio is float32 mono numpy
arrays; input audio is always 16 kHz. Optional abilities (a text end-of-utterance score, a recognizer that decodes
in steps while the user talks, an offline recognizer path, several voices) are protocols of their own, checked once
when the engines are put together (`engines/engine_set.py`); callers never probe an engine with `hasattr`."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, Self, runtime_checkable

import numpy as np

SAMPLE_RATE = 16_000  # every input-side engine works at 16 kHz mono float32


@runtime_checkable
class Vad(Protocol):
    """Speech probability per frame of `frame_samples` samples at 16 kHz, stateful across frames."""

    frame_samples: int

    def probability(self, frame: np.ndarray) -> float: ...

    def reset(self) -> None: ...


@runtime_checkable
class TurnDetector(Protocol):
    """Probability that the user's turn is complete, from the audio of the whole current turn."""

    def probability_complete(self, turn_audio: np.ndarray) -> float: ...


@runtime_checkable
class Recognizer(Protocol):
    """Streaming speech recognition of one utterance: start, accept chunks, read partials, finish."""

    name: str

    def start(self) -> None: ...

    def accept(self, chunk: np.ndarray) -> None: ...

    def partial(self) -> str: ...

    def finish(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True, slots=True)
class GenerationStep:
    text: str  # the text produced by this step (may be empty while a multi-byte character is pending)
    tokens: int  # tokens generated in this step
    finished: bool  # end of generation reached (end-of-generation token or the length limit)
    cut: bool = False  # it ended before the reply did (the length limit, a repetition loop): the text may stop
    # mid-sentence, and a voice should not speak a half sentence


@runtime_checkable
class Generation(Protocol):
    """One reply being generated; the KV cache is kept between steps, so a step never re-runs the prompt."""

    prompt_tokens: int  # tokens in the prompt
    reused_tokens: int  # of those, how many came from the cached prefix (not evaluated again)

    def prefill(self) -> None: ...  # evaluate the prompt now (optional; step() does it if needed)

    def step(self, max_tokens: int) -> GenerationStep: ...

    def cancel(self) -> None: ...


@runtime_checkable
class Generator(Protocol):
    name: str

    def start(self, messages: Sequence[Message], max_tokens: int = 256) -> Generation: ...


@dataclass(frozen=True, slots=True)
class AudioChunk:
    samples: np.ndarray  # float32 mono in [-1, 1]
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


@runtime_checkable
class Synthesizer(Protocol):
    name: str
    sample_rate: int

    def synthesize(self, text: str) -> Iterator[AudioChunk]: ...


# ---- optional abilities -------------------------------------------------------------------------------------------


@runtime_checkable
class SteppedRecognizer(Recognizer, Protocol):
    """A recognizer that decodes while the user talks: `wants_step()` says a bounded decode is due, `step()` runs
    one (False when there was nothing new to decode), so `finish()` has little left at the end of the turn."""

    def wants_step(self) -> bool: ...

    def step(self) -> bool: ...


@runtime_checkable
class OfflineRecognizer(Protocol):
    """A recognizer with a path for a whole recording at once (any length), better than streaming it in chunks."""

    def transcribe(self, audio: np.ndarray) -> str: ...


@runtime_checkable
class ScoredGeneration(Generation, Protocol):
    """A generation that also reads the text end-of-utterance score from the prompt's own evaluation."""

    # log10 P(the user's sentence ends after their last word); None when this model cannot say (a server that
    # gives no log-probabilities): the end-of-turn rule then goes by the audio
    def eou_score(self) -> float | None: ...


@runtime_checkable
class SlicedPrefill(Protocol):
    """A generation whose prompt can go in slices: `prefill_slice(n)` evaluates at most `n` more prompt tokens and
    says whether the whole prompt is in, so a more urgent unit need not wait for a long prompt."""

    def prefill_slice(self, max_tokens: int) -> bool: ...


@runtime_checkable
class TextTurnScorer(Protocol):
    """A generator whose generations score the end of the user's utterance from the text (`ScoredGeneration`)."""

    name: str

    def start(self, messages: Sequence[Message], max_tokens: int = 256) -> ScoredGeneration: ...

    def end_of_utterance_score(self, messages_until_user_text: Sequence[Message]) -> float | None: ...


class EngineUnavailable(RuntimeError):
    """An engine cannot do its work now for a reason the user can fix or wait out (a server down, a key refused).
    Its message is one line with no conversation content in it, so it may be shown and logged as it is."""


@runtime_checkable
class RemoteModel(Protocol):
    """An engine that runs on another machine (a server at `base_url`): waiting for it uses no local compute."""

    base_url: str


@runtime_checkable
class DeviceSynchronized(Protocol):
    """An engine whose device work may still run after its call returned (CUDA kernels are asynchronous).
    `synchronize()` returns once all the work it launched has ended (and raises a device error that happened
    meanwhile); the scheduler calls it at the end of each device-lane unit, so spans measure device time.
    `asynchronous` is False when the engine runs on the CPU: there is then nothing to wait for."""

    asynchronous: bool

    def synchronize(self) -> None: ...


@runtime_checkable
class Forkable(Protocol):
    """An engine that can serve another conversation at the same time: `fork()` returns a twin that shares the
    weights (loaded once) but none of the conversation's state (a VAD's recurrent state, a recognizer's utterance,
    an LLM's context and cache, the chosen voice). Close a fork before the engine it came from."""

    def fork(self) -> Self: ...


@runtime_checkable
class Closable(Protocol):
    """An engine that can free its model at once (llama.cpp's memory) instead of when it is collected."""

    def close(self) -> None: ...


@runtime_checkable
class VoiceChoice(Protocol):
    """A synthesizer with several voices."""

    def voices(self) -> list[str]: ...

    def set_voice(self, voice: str) -> None: ...


@runtime_checkable
class EchoCanceller(Protocol):
    """Removes the speaker's echo from the microphone, 10 ms at a time: `far()` gets each frame the speaker
    plays (before the microphone frames that may contain its echo), `near()` returns the cleaned microphone
    frame. Frames are `frame_samples` float32 samples at 16 kHz."""

    frame_samples: int

    def far(self, frame: np.ndarray) -> None: ...

    def near(self, frame: np.ndarray) -> np.ndarray: ...

    def set_delay_ms(self, delay_ms: int) -> None: ...
