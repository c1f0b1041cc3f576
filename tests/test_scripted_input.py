"""The scripted user of headless runs (app/headless/script.py): when its first turn starts."""
from __future__ import annotations

import numpy as np

from app.headless.script import LEAD_IN_S, READY_WAIT_S, ScriptedInput, UserTurn

RATE, BLOCK = 16000, 512


def user(ready: list[bool]) -> ScriptedInput:
    clip = np.full(RATE // 10, 0.5, np.float32)
    return ScriptedInput([UserTurn(clip)], RATE, agent_idle=lambda: True, agent_playing_s=lambda: None,
                         agent_ready=lambda: bool(ready))


def first_sound(source: ScriptedInput, limit_s: float, from_sample: int = 0) -> int | None:
    """The sample at which the source first plays something (None: not before `limit_s`); blocks are asked for
    from `from_sample` on, as a device would (a turn starts at a block's boundary)."""
    for start in range(from_sample, int(limit_s * RATE), BLOCK):
        out = source(start, BLOCK)
        if out is not None and out.any():
            return start + int(np.argmax(out != 0))
    return None


def test_the_first_turn_waits_for_the_session_to_be_ready():
    ready: list[bool] = []
    source = user(ready)
    waited = 3 * RATE // BLOCK * BLOCK
    assert first_sound(source, waited / RATE) is None and source.index == -1  # ~3 s, not ready: the user waits
    ready.append(True)
    assert first_sound(source, 4.0, waited) == waited


def test_a_ready_session_hears_the_first_turn_after_the_lead_in():
    start = first_sound(user([True]), 2.0)
    assert start is not None and LEAD_IN_S * RATE <= start < LEAD_IN_S * RATE + BLOCK


def test_a_session_that_never_says_ready_still_gets_its_first_turn():
    start = first_sound(user([]), READY_WAIT_S + 1)
    assert start is not None and READY_WAIT_S * RATE <= start < READY_WAIT_S * RATE + BLOCK
