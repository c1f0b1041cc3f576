"""Inputs of the turn-taking state machine.

Every event carries ``t``: seconds on the session clock when it happened. The state machine reads no
clock of its own; time passes only through events (``Tick`` exists for that alone). Events that
belong to a turn carry its ``turn_id``; events from any other turn are stale and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The VAD heard speech begin."""

    t: float


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """The VAD saw a pause: emitted ``TurnSettings.pause_s`` after the speech ended.

    ``speech_s`` is how long the speech segment lasted, when the VAD knows; otherwise the state
    machine estimates it as ``t - pause_s - (when it started)``.
    """

    t: float
    speech_s: float | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passes; drives the timeouts (max wait, text-score wait, barge-in confirmation)."""

    t: float


@dataclass(frozen=True, slots=True)
class TurnVerdict:
    """Smart Turn's opinion on the whole user turn so far. ``probability`` is P(turn complete)."""

    t: float
    turn_id: int
    complete: bool
    probability: float


@dataclass(frozen=True, slots=True)
class TranscriptPartial:
    """Interim ASR text (for the UI; the state machine does not act on it)."""

    t: float
    turn_id: int
    text: str


@dataclass(frozen=True, slots=True)
class TranscriptFinal:
    """The ASR finished the turn: ``text`` covers the whole user turn."""

    t: float
    turn_id: int
    text: str


@dataclass(frozen=True, slots=True)
class EndOfUtteranceScore:
    """Text end-of-turn signal from the speculative LLM prefill: log10 P(end-of-message).

    ``score=None`` says that no text signal is available for this turn (stop waiting for one).
    """

    t: float
    turn_id: int
    score: float | None


@dataclass(frozen=True, slots=True)
class ReplyText:
    """The LLM produced more reply text (for the UI: generated is not heard; see ``ReplyAudio``)."""

    t: float
    turn_id: int
    text: str


@dataclass(frozen=True, slots=True)
class ReplyAudio:
    """TTS rendered segment ``segment_index`` (0, 1, ...): ``duration_s`` of audio speaking ``text``.

    ``duration_s`` is the audio as it will be played, including any silence added after it. ``text`` is the
    segment as spoken ("three times sixty"); ``written`` as the language model wrote it ("3 × 60"; empty: the same).
    """

    t: float
    turn_id: int
    segment_index: int
    text: str
    duration_s: float
    written: str = ""


@dataclass(frozen=True, slots=True)
class PlaybackProgress:
    """``played_s`` seconds of this turn's reply audio have reached the speaker so far."""

    t: float
    turn_id: int
    played_s: float


@dataclass(frozen=True, slots=True)
class PlaybackFinished:
    """The playback buffer played everything it was given for this turn."""

    t: float
    turn_id: int


@dataclass(frozen=True, slots=True)
class ReplyFinished:
    """Generation is done: no more ``ReplyText`` or ``ReplyAudio`` will come for this turn."""

    t: float
    turn_id: int


@dataclass(frozen=True, slots=True)
class EngineFailed:
    """A model failed while working on this turn (``stage``: "asr", "turn", "llm", "tts", ...)."""

    t: float
    turn_id: int
    stage: str
    reason: str


@dataclass(frozen=True, slots=True)
class ReplyCancelled:
    """Someone other than the user's voice stopped this turn's reply (a Realtime API client's response.cancel)."""

    t: float
    turn_id: int


Event = (
    SpeechStarted | SpeechStopped | Tick | TurnVerdict | TranscriptPartial | TranscriptFinal
    | EndOfUtteranceScore | ReplyText | ReplyAudio | PlaybackProgress | PlaybackFinished
    | ReplyFinished | EngineFailed | ReplyCancelled
)
