"""The WER normaliser (app/metrics/wer.py) and the single-clip limit (tests/wer.py): digits, hyphenated digits and
number words compare equal; the quiet digits clip's reference and Whisper's hyphenated output line up word for
word, so a missing digit group costs exactly its five words."""
from __future__ import annotations

import doctest

import pytest

import app.metrics.wer as product_wer
import tests.wer as test_wer
from tests.conftest import speech_manifest
from tests.wer import clip_limit, corpus_wer, edit_distance, normalise, wer

DIGITS = "en_digits_10001-90210-01803.wav"


def test_the_docstring_examples_hold():
    assert doctest.testmod(product_wer).failed == 0
    assert doctest.testmod(test_wer).failed == 0


@pytest.mark.parametrize("a, b", [
    ("1-0-0-0-1", "one zero zero zero one"),
    ("10001", "one zero zero zero one"),
    ("9-0-2-1-0", "nine oh two one oh"),
    ("90210", "nine oh two one zero"),
    ("0-1-8-0-3.", "zero one eight zero three"),
    ("1, 2, 3.", "one two three"),
    ("10 of clubs", "ten of clubs"),
    ("21", "twenty-one"),
    ("300", "three hundred"),
    ("5,000", "five thousand"),
    ("Mr. Quilter", "mister quilter"),
    ("It's OK.", "its okay"),
])
def test_digits_and_number_words_normalise_the_same(a, b):
    assert normalise(a) == normalise(b), (normalise(a), normalise(b))
    assert wer(b, a) == 0.0


def test_an_interjection_oh_stays_a_word():
    assert normalise("Oh, I see.") == "oh i see"
    assert normalise("one oh one") == "one zero one"


def test_the_digits_clip_reference_and_whispers_hyphenated_digits_line_up():
    """AMD EPYC's offline result for the quiet digits clip drops the middle group: the normaliser reads the other
    two groups as the reference's words, so the WER is the five missing words only, all deletions."""
    reference = next(r["transcript"] for r in speech_manifest() if r["file"] == DIGITS)
    ref = normalise(reference).split()
    assert ref == "one zero zero zero one nine zero two one zero zero one eight zero three".split()
    hyp = normalise("1-0-0-0-1 0-1-8-0-3").split()
    assert hyp == ref[:5] + ref[10:]
    assert edit_distance(ref, hyp) == 5 == len(ref) - len(hyp)
    assert wer(reference, "1-0-0-0-1. 9-0-2-1-0. 0-1-8-0-3.") == 0.0  # the Intel Xeon result (docs/engines-input.md)


def test_wer_and_corpus_wer():
    assert wer("go forward ten meters", "go forward 10 meters") == 0.0
    assert wer("go forward ten meters", "go forward") == 0.5
    assert wer("go forward ten meters", "") == 1.0
    assert wer("", "") == 0.0 and wer("", "hello") == 1.0
    # pooled: total edits over total reference words, not the mean of the clips' rates
    assert corpus_wer([("a b c d", "a b c"), ("e f", "e f")]) == pytest.approx(1 / 6)


def test_clip_limit_leaves_two_words_on_short_clips_only():
    assert clip_limit("go forward ten meters", 0.2) == 0.5
    assert clip_limit("feels like these days go on forever", 0.15) == pytest.approx(2 / 7)
    long = "and mister john dashwood had then leisure to consider how much there might be prudently in his power"
    assert clip_limit(long, 0.15) == 0.15
    assert clip_limit("she had your dark suit in greasy wash water all year", 0.2, words=3) == pytest.approx(3 / 11)
