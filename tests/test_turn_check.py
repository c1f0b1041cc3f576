"""When Smart Turn runs on a CPU-only machine (app/conversation/turn_check.py): at once, or, when the words settle
the turn, after the reply's first voiced segment; every wait bounded. No engines: a recorder stands for EngineWork."""
from __future__ import annotations

from typing import cast

import numpy as np
import pytest

from app.conversation.engine_work import EngineWork
from app.conversation.turn_check import MAX_WAIT_SCORE_S, MAX_WAIT_VOICE_S, TurnCheck, Waiting
from app.conversation.turn_rule import TurnSettings

AUDIO = np.zeros(160, np.float32)
SURE, LIKELY = -0.05, -0.6


class Recorder:
    def __init__(self) -> None:
        self.turns: list[int] = []

    def detect_turn(self, turn: int, audio: np.ndarray) -> None:
        self.turns.append(turn)


def check(defer: bool = True) -> tuple[TurnCheck, Recorder]:
    work = Recorder()
    return TurnCheck(cast(EngineWork, work), TurnSettings(), defer), work


def test_with_its_own_lane_smart_turn_runs_at_once():
    tc, work = check(defer=False)
    tc.request(1, AUDIO, 0.0, None)
    assert work.turns == [1] and tc.waiting is None


@pytest.mark.parametrize("score", [LIKELY, -5.0, None], ids=["likely", "fragment", "no score"])
def test_a_text_less_than_sure_needs_the_verdict_now(score):
    tc, work = check()
    tc.request(1, AUDIO, 0.0, (score,))
    assert work.turns == [1]


def test_surely_complete_words_wait_for_the_first_voiced_segment():
    tc, work = check()
    tc.request(1, AUDIO, 0.0, (SURE,))
    assert work.turns == [] and tc.waiting is Waiting.VOICE
    tc.voiced(2)  # another turn's reply
    assert work.turns == []
    tc.voiced(1)
    assert work.turns == [1] and tc.waiting is None


def test_the_request_waits_for_the_score_then_decides():
    tc, work = check()
    tc.request(1, AUDIO, 0.0, None)
    assert tc.waiting is Waiting.SCORE
    tc.scored(2, LIKELY, 0.1)  # a stale turn's speculation
    assert work.turns == [] and tc.waiting is Waiting.SCORE
    tc.scored(1, SURE, 0.2)
    assert work.turns == [] and tc.waiting is Waiting.VOICE
    tc.voiced(1)
    assert work.turns == [1]


def test_a_reply_voiced_before_the_request_lets_it_run_at_once():
    tc, work = check()
    tc.voiced(1)
    tc.request(1, AUDIO, 0.0, (SURE,))
    assert work.turns == [1]


@pytest.mark.parametrize("waiting, limit", [(Waiting.SCORE, MAX_WAIT_SCORE_S), (Waiting.VOICE, MAX_WAIT_VOICE_S)])
def test_every_wait_is_bounded(waiting, limit):
    tc, work = check()
    tc.request(1, AUDIO, 10.0, None if waiting is Waiting.SCORE else (SURE,))
    tc.poll(10.0 + limit - 0.01)
    assert work.turns == [] and tc.waiting is waiting
    tc.poll(10.0 + limit + 0.001)
    assert work.turns == [1] and tc.waiting is None


def test_a_new_request_replaces_a_waiting_one():
    tc, work = check()
    tc.request(1, AUDIO, 0.0, None)  # the user resumed: turn 2 pauses
    tc.request(2, AUDIO, 1.0, (LIKELY,))
    tc.scored(1, LIKELY, 1.1)
    assert work.turns == [2]


def test_a_cancelled_turn_asks_for_no_verdict():
    tc, work = check()
    tc.request(1, AUDIO, 0.0, (SURE,))
    tc.cancel(2)
    assert tc.waiting is Waiting.VOICE
    tc.cancel(1)
    tc.voiced(1)
    tc.poll(100.0)
    assert work.turns == [] and tc.waiting is None
