"""What arrives on a session's inbox: one typed union, dispatched with `match` on the session thread.

Microphone blocks come from the audio thread, the VAD's verdict on each block and the engines' results from the
lane threads, the end of a reply stream from the stream driver. Everything the turn-taking core acts on is one of
its own events (`app/conversation/events.py`), posted as is."""
from __future__ import annotations

from dataclasses import dataclass

from app.audio.duplex import Block
from app.conversation import events as e
from scheduler import StreamSummary


@dataclass(frozen=True, slots=True)
class VadJudged:
    """The VAD's speech probability for microphone block ``index`` (None: the VAD unit failed)."""

    index: int
    t_start: float
    t_end: float
    probability: float | None
    error: str = ""  # the exception's type when the unit failed (never its message)


@dataclass(frozen=True, slots=True)
class ReplyEnded:
    """The reply stream of ``turn_id`` is over (finished, cancelled or failed); playback may still go on."""

    turn_id: int
    summary: StreamSummary


@dataclass(frozen=True, slots=True)
class Stop:
    """Ends the session thread."""


SessionInput = Block | VadJudged | ReplyEnded | Stop | e.Event
