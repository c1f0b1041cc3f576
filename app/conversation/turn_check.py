"""When Smart Turn runs (session thread only): at once, or after the reply's first voiced segment when the words
settle the turn.

On a CPU-only machine Smart Turn takes its turn on the device lane with the language model (docs/scheduler.md), and
the chain to the first audio is one unit after another: the pause's decode, the prefill, Smart Turn, the first
clause, its voice. When the text score says the words are surely complete (`turn_rule.text_decides`), the verdict
cannot delay the reply (the turn ends `sure_wait_s` after the pause whatever it says; on a CPU the first audio is
ready later than that), so Smart Turn waits until the reply's first segment is voiced and then still gives its
verdict for the turn's record. The text score comes from the speculation's prefill, usually after the pause is
confirmed, so the request first waits for it. Each wait is bounded (`MAX_WAIT_SCORE_S`, `MAX_WAIT_VOICE_S`): then
Smart Turn runs at once. Where it has its own lane (beside a GPU), the model is on a server, or no score will come
(the naive pipeline), it runs at once, as before."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from app.conversation.engine_work import EngineWork
from app.conversation.turn_rule import TurnSettings, text_decides

MAX_WAIT_SCORE_S = 1.0  # a request whose text score has not come by then runs at once (as the core, which then
# decides without the score: `TurnSettings.text_score_wait_s`)
MAX_WAIT_VOICE_S = 3.0  # ... and one whose reply has voiced nothing by then (its verdict is for the record only)


class Waiting(Enum):
    SCORE = "score"  # for the speculation's text score
    VOICE = "voice"  # for the reply's first voiced segment (the words settled the turn)


@dataclass(frozen=True, slots=True)
class _Parked:
    turn: int
    audio: np.ndarray
    since: float
    waiting: Waiting


class TurnCheck:
    def __init__(self, work: EngineWork, settings: TurnSettings, defer: bool):
        """`defer`: Smart Turn shares the device lane with an in-process language model that scores the text."""
        self.work, self.settings, self.defer = work, settings, defer
        self._parked: _Parked | None = None
        self._voiced: int | None = None  # the last turn whose reply voiced a segment

    @property
    def waiting(self) -> Waiting | None:
        return self._parked.waiting if self._parked is not None else None

    def request(self, turn: int, audio: np.ndarray, now: float, score: tuple[float | None] | None) -> None:
        """The core's `StartTurnDetection`. `score`: the turn's text score when its speculation has one already
        (a 1-tuple, the score possibly None), else None."""
        self._parked = None
        if not self.defer:
            self.work.detect_turn(turn, audio)
        elif score is None:
            self._parked = _Parked(turn, audio, now, Waiting.SCORE)
        else:
            self._after_score(turn, audio, now, score[0])

    def scored(self, turn: int, score: float | None, now: float) -> None:
        """A speculation of `turn` read its text score."""
        parked = self._parked
        if parked is not None and parked.turn == turn and parked.waiting is Waiting.SCORE:
            self._parked = None
            self._after_score(turn, parked.audio, now, score)

    def voiced(self, turn: int) -> None:
        """The reply of `turn` has a voiced segment."""
        self._voiced = turn
        parked = self._parked
        if parked is not None and parked.turn == turn and parked.waiting is Waiting.VOICE:
            self._parked = None
            self.work.detect_turn(turn, parked.audio)

    def cancel(self, turn: int) -> None:
        """The turn's reply is not wanted (the user resumed, barge-in, a failure): its verdict is not either."""
        if self._parked is not None and self._parked.turn == turn:
            self._parked = None

    def poll(self, now: float) -> None:
        """On each microphone block: a request that waited too long runs at once."""
        parked = self._parked
        limit = MAX_WAIT_SCORE_S if parked is not None and parked.waiting is Waiting.SCORE else MAX_WAIT_VOICE_S
        if parked is not None and now - parked.since >= limit:
            self._parked = None
            self.work.detect_turn(parked.turn, parked.audio)

    def _after_score(self, turn: int, audio: np.ndarray, now: float, score: float | None) -> None:
        if text_decides(self.settings, score) and self._voiced != turn:
            self._parked = _Parked(turn, audio, now, Waiting.VOICE)
        else:
            self.work.detect_turn(turn, audio)
