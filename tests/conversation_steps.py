"""Helpers for the pure turn-taking tests: feed events to `state.step`, pick actions, build a turn that ends
complete, a committed reply and one being spoken."""

from __future__ import annotations

from app.conversation import actions as a
from app.conversation.events import (
    EndOfUtteranceScore,
    PlaybackProgress,
    ReplyAudio,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
    TurnVerdict,
)
from app.conversation.state import ConversationState, step

QUESTION = "What is the tallest mountain in Africa?"


def run(events, state=None):
    """Feed ``events``; return the final state and every action emitted, in order."""
    state = state or ConversationState()
    out: list[a.Action] = []
    for event in events:
        state, actions = step(state, event)
        out.extend(actions)
    return state, out


def of(actions, kind):
    return [x for x in actions if isinstance(x, kind)]


def user_turn(tid: int, t0: float, text: str = QUESTION, p: float = 0.9, score: float | None = -0.01):
    """A user turn at ``t0`` (1 s of speech) that ends complete by both signals."""
    stop = t0 + 1.2
    return [
        SpeechStarted(t0),
        SpeechStopped(stop),
        TurnVerdict(stop + 0.07, tid, p >= 0.5, p),
        TranscriptFinal(stop + 0.2, tid, text),
        EndOfUtteranceScore(stop + 0.35, tid, score),
    ]


def committed(tid: int = 1, t0: float = 0.0, state=None):
    """State after a committed user turn (RESPONDING)."""
    return run(user_turn(tid, t0), state)[0]


def speaking(tid: int = 1, t0: float = 0.0, played_s: float = 1.0, state=None):
    """RESPONDING -> SPEAKING with two rendered 2-second segments, ``played_s`` of them played."""
    s = committed(tid, t0, state)
    s, _ = run(
        [
            ReplyAudio(t0 + 1.8, tid, 0, "Mount Kilimanjaro is the tallest.", 2.0),
            ReplyAudio(t0 + 2.0, tid, 1, "It rises almost six kilometres.", 2.0),
            PlaybackProgress(t0 + 2.0, tid, played_s),
        ],
        s,
    )
    return s
