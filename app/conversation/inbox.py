"""What arrives on a session's inbox: one typed union, dispatched with `match` on the session thread.

Microphone blocks come from the audio thread, the VAD's verdict on each block and the engines' results from the
lane threads, the end of a reply stream from the stream driver. Everything the turn-taking core acts on is one of
its own events (`app/conversation/events.py`), posted as is."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.audio.duplex import Block
from app.conversation import events as e
from scheduler import StreamSummary

if TYPE_CHECKING:
    from app.conversation.engine_work import Speculation
    from app.conversation.reply import Reply


@dataclass(frozen=True, slots=True)
class VadJudged:
    """The VAD's speech probability for microphone block ``index`` (None: the VAD unit failed)."""

    index: int
    t_start: float
    t_end: float
    probability: float | None
    error: str = ""  # the exception's type when the unit failed (never its message)
    level_db: float | None = None  # the block's level (dBFS), for the pause onset


@dataclass(frozen=True, slots=True)
class ReplyEnded:
    """The reply stream of ``turn_id`` is over (finished, cancelled or failed); playback may still go on."""

    turn_id: int
    summary: StreamSummary


@dataclass(frozen=True, slots=True)
class PauseText:
    """What the recognizer has decoded so far in ``turn_id``: at the onset of a pause (a speculation may start on
    it), or while the user speaks (the LLM's cache may be warmed with it)."""

    turn_id: int
    text: str
    at_pause: bool = True


@dataclass(frozen=True, slots=True)
class Scored:
    """A speculation's prefill is done: its text end-of-utterance score is known (None: the LLM gives none)."""

    speculation: Speculation


@dataclass(frozen=True, slots=True)
class FromReply:
    """An item from one reply stream (its segments, its end, its failure); applied only while that reply is
    still the turn's, so nothing of a discarded speculation reaches the conversation."""

    source: Reply
    item: ReplyEnded | e.Event


@dataclass(frozen=True, slots=True)
class ReviseReply:
    """The last reply was heard only up to ``text`` (the model's own words), as a client reported afterwards."""

    text: str


@dataclass(frozen=True, slots=True)
class SystemPrompt:
    """The conversation goes on under new instructions (a Realtime client's session.update)."""

    text: str


@dataclass(frozen=True, slots=True)
class Stop:
    """Ends the session thread."""


# a reply's end comes in FromReply
SessionInput = Block | VadJudged | PauseText | Scored | FromReply | ReviseReply | SystemPrompt | Stop | e.Event
