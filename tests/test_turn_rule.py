"""The end-of-turn fusion rule (`app/conversation/turn_rule.py`), one case a line: the wait after the pause and its
reason for each pair of signals (Smart Turn's probability, the text score), and the settings it refuses."""
from __future__ import annotations

import doctest

import pytest

from app.conversation import turn_rule
from app.conversation.turn_rule import TurnSettings, TurnSettingsError, decide, text_opinion


def test_the_docstring_examples_hold():
    assert doctest.testmod(turn_rule).failed == 0


@pytest.mark.parametrize(
    "score,opinion", [(-0.01, True), (-1.2, True), (-2.23, None), (-3.0, False), (-7.3, False), (None, None)]
)
def test_text_opinion_bands(score, opinion):
    assert text_opinion(score, TurnSettings()) is opinion


@pytest.mark.parametrize("audio_p,text,wait,reason", [
    (0.97, -0.44, 0.0, "complete"),  # "What is the hardest natural material?": both say complete, the voice surely
    (0.90, -1.2, 0.0, "complete"),  # the edges of both bands
    (0.80, -0.10, 0.3, "text_sure"),  # words surely complete, a voice that only leans: a short wait
    (0.04, -0.005, 0.3, "text_sure"),  # a flat voice, words surely complete
    (0.73, -0.60, 1.2, "uncertain_wait"),  # "What is that?" heard for "What is the, …": the voice only leans
    (0.88, -0.25, 1.2, "uncertain_wait"),  # "Is it tomato, a fruit?" cut at the hesitation
    (0.98, -1.69, 1.2, "uncertain_wait"),  # the voice sure, the words unsure ("1,0001" read from a card)
    (0.95, -3.26, 1.5, "disagree_wait"),  # "What is the capital?" before "… of Australia": a fragment
    (0.20, -0.50, 1.5, "disagree_wait"),  # words likely complete, the voice "not yet"
    (0.30, -2.00, 2.0, "max_wait"),  # neither
    (0.30, -5.00, 2.0, "max_wait"),
    (0.70, None, 0.0, "complete"),  # no text score: the voice decides
    (0.30, None, 2.0, "max_wait"),
])
def test_the_rule_case_by_case(audio_p, text, wait, reason):
    assert decide(TurnSettings(), audio_p, text) == (wait, reason)


def test_a_stricter_audio_threshold_than_the_sure_one_still_replies_at_once():
    """A user who sets turn_threshold above turn_sure_threshold: 'complete' then needs their threshold only."""
    assert decide(TurnSettings(turn_threshold=0.95), 0.96, -0.5) == (0.0, "complete")
    assert decide(TurnSettings(turn_threshold=0.95), 0.93, -0.5) == (1.5, "disagree_wait")


def test_the_sure_threshold_at_zero_is_the_rule_before():
    """turn_sure_threshold 0: any Smart Turn 'complete' with a likely text replies at once (the rule of the last stop,
    `cadence bench turns` compares it)."""
    assert decide(TurnSettings(turn_sure_threshold=0.0), 0.73, -0.60) == (0.0, "complete")


@pytest.mark.parametrize("changes,field", [
    ({"turn_sure_threshold": 1.5}, "turn_sure_threshold"),
    ({"turn_threshold": -0.1}, "turn_threshold"),
    ({"sure_wait_s": -1.0}, "sure_wait_s"),
    ({"text_fragment_log10": -1.0}, "text_fragment_log10"),
    ({"uncertain_wait_s": 1.8}, "max_wait_s"),  # longer than disagree_wait_s
])
def test_bad_settings_name_their_field(changes, field):
    with pytest.raises(TurnSettingsError) as err:
        TurnSettings(**changes)
    assert err.value.field == field
