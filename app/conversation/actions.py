"""Outputs of the turn-taking state machine: what the session should do next.

The session turns these into scheduler work units, playback commands, history updates and log
records. ``LogEvent`` carries timings and counts only, never words of the conversation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class StartTranscription:
    """Start ASR for a new user turn on the audio from ``from_t`` onward."""

    turn_id: int
    from_t: float


@dataclass(frozen=True, slots=True)
class ContinueTranscription:
    """The user resumed after a pause: continue ``previous_turn_id``'s ASR as ``turn_id``.

    The final transcript of ``turn_id`` must cover the whole user turn, from ``from_t`` (the start
    of the turn's first speech), not only the speech after the pause.
    """

    turn_id: int
    previous_turn_id: int
    from_t: float


@dataclass(frozen=True, slots=True)
class FinishTranscription:
    """The user paused: finalize the turn's transcript (answered by ``TranscriptFinal``)."""

    turn_id: int


@dataclass(frozen=True, slots=True)
class StartTurnDetection:
    """Run Smart Turn on the CPU lane over the whole turn's audio since ``from_t``."""

    turn_id: int
    from_t: float


@dataclass(frozen=True, slots=True)
class StartSpeculativeReply:
    """Prefill the LLM with the user's final ``text`` (and score end-of-utterance) before commit."""

    turn_id: int
    text: str


@dataclass(frozen=True, slots=True)
class CommitReply:
    """The speculative reply proceeds: generate and speak it. Why the turn ended rides along (not compared):
    the rule's reason, Smart Turn's probability, the text score and the wait the rule added after the pause."""

    turn_id: int
    reason: str = field(default="", compare=False)
    audio_p: float | None = field(default=None, compare=False)
    text_log10: float | None = field(default=None, compare=False)
    waited_s: float = field(default=0.0, compare=False)
    at: float | None = field(default=None, compare=False)  # when (session clock)


@dataclass(frozen=True, slots=True)
class CancelReply:
    """Cancel the turn's LLM and TTS work units."""

    turn_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class FlushPlayback:
    """Drop the turn's reply audio that has not been played yet."""

    turn_id: int


@dataclass(frozen=True, slots=True)
class PausePlayback:
    """Hold the reply's audio at once (speech started during the reply; it may still be a noise)."""

    turn_id: int


@dataclass(frozen=True, slots=True)
class ResumePlayback:
    """Go on playing the held reply (the speech was too short to be an interruption)."""

    turn_id: int


@dataclass(frozen=True, slots=True)
class AppendHistory:
    """Add a message to the chat history (the assistant's text is what the user heard).

    ``text`` is what was said (the transcript shows it); ``model_text``, for the assistant, is the same words as the
    language model wrote them, which is what its own history keeps (empty: the same as ``text``). A model fed its
    answers in spoken form imitates it and gets numbers wrong ("one eight0").
    """

    role: Literal["user", "assistant"]
    text: str
    interrupted: bool = False
    model_text: str = ""


@dataclass(frozen=True, slots=True)
class ForgetQuestion:
    """Drop the user's last message from the chat history: its reply failed before a word of it was heard. Left
    there, the next question would be merged into it and the model would answer both."""

    turn_id: int


@dataclass(frozen=True, slots=True)
class LogEvent:
    """A timing/event record: ``detail`` is ``key=value`` pairs, never conversation words."""

    kind: str
    detail: str = ""


Action = (
    StartTranscription | ContinueTranscription | FinishTranscription | StartTurnDetection
    | StartSpeculativeReply | CommitReply | CancelReply | FlushPlayback | PausePlayback | ResumePlayback
    | AppendHistory | ForgetQuestion | LogEvent
)
