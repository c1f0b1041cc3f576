"""Spoken-style text: what reaches the voice is what a person would say (no markdown, LaTeX, symbols, links or
digits), the reply's segments are spoken in that form and kept so, a cut reply never ends mid-sentence, and the
repetition guard breaks loops without touching ordinary text. Pure: no models."""
from __future__ import annotations

import doctest

import pytest

from app.conversation import spoken
from app.conversation.reply_text import speak_all
from app.conversation.spoken import speakable, unreadable
from app.conversation.state import step
from engines import repetition


def test_the_examples_in_the_docstrings_hold():
    assert doctest.testmod(spoken).failed == 0
    assert doctest.testmod(repetition).failed == 0


@pytest.mark.parametrize("written, said", [
    ("3 × 60 = 180", "three times sixty equals one hundred and eighty"),
    ("\\(3 \\times 60\\)", "three times sixty"),
    ("$$\\frac{1}{4} + \\sqrt{16}$$", "one over four plus the square root of sixteen"),
    ("It is 20°C today", "It is twenty degrees Celsius today"),
    ("About 98.6°F", "About ninety-eight point six degrees Fahrenheit"),
    ("Save 15%!", "Save fifteen percent!"),
    ("Drive at 50 km/h.", "Drive at fifty kilometers per hour."),
    ("It's $5.", "It's five dollars."),
    ("$2 million", "two million dollars"),
    ("1. Preheat the oven.", "First, preheat the oven."),
    ("3) Serve", "Third, serve"),
    ("## Tips", "Tips"),
    ("- **Drink** water", "Drink water"),
    ("See [the docs](https://x.org/a) or www.python.org.", "See the docs or python dot org."),
    ("Mail me at ann@example.com", "Mail me at ann at example dot com"),
    ("e.g. apples, i.e. fruit, etc.", "for example apples, that is fruit, et cetera"),
    ("Great job! 🎉👍", "Great job!"),
    ("In 1969 and in the 20th century", "In nineteen sixty-nine and in the twentieth century"),
    ("Boil 6-8 minutes", "Boil six to eight minutes"),
    ("It was -3 degrees", "It was minus three degrees"),
])
def test_written_text_becomes_what_a_person_would_say(written, said):
    assert speakable(written) == said
    assert unreadable(speakable(written)) == []


def test_plain_sentences_pass_unchanged():
    for text in ("The tallest mountain in Africa is Mount Kilimanjaro.", "Hello! How can I help you today?",
                 "Spiders have eight legs, and most of them spin webs."):
        assert speakable(text) == text


def test_unreadable_flags_what_a_voice_would_spell_out():
    assert unreadable("Use * and # and \\frac") == ["*", "#", "\\"]
    assert unreadable("Café, naïve — ok") == ["—"]


class Steps:
    """A scripted generation: each step hands out the next piece; `cut` marks the end as the length limit's."""

    def __init__(self, pieces: list[str], cut: bool = False):
        self.pieces, self.cut, self.cancelled = list(pieces), cut, False

    def step(self, max_tokens: int):
        from engines.protocols import GenerationStep

        piece = self.pieces.pop(0) if self.pieces else ""
        done = not self.pieces
        return GenerationStep(piece, 1, done, cut=self.cut and done)

    def cancel(self) -> None:
        self.cancelled = True


def produce_all(max_words: int, generation) -> list[str]:
    """The segments the reply would speak, through the same text loop the live reply runs."""
    return speak_all(generation, max_words=max_words, chunk_tokens=8)[0]


def test_a_cut_reply_does_not_speak_its_unfinished_sentence():
    generation = Steps(["Pack a warm jacket. ", "Bring an umbrella. ", "You should also bring a"], cut=True)
    assert produce_all(60, generation) == ["Pack a warm jacket.", "Bring an umbrella."]


def test_a_reply_that_ends_by_itself_says_everything():
    generation = Steps(["It is 5 km away. ", "About 3 × 60 minutes on foot"])
    assert produce_all(60, generation) == ["It is five kilometers away.",
                                                     "About three times sixty minutes on foot"]


def test_a_long_reply_ends_at_the_first_sentence_end_past_the_word_cap():
    generation = Steps(["One two three four five six. ", "Seven eight nine ten eleven. ", "Twelve thirteen. ",
                        "Never said."])
    said = produce_all(8, generation)
    assert said == ["One two three four five six.", "Seven eight nine ten eleven."] and generation.cancelled


def test_the_repetition_guard_leaves_ordinary_text_alone_and_bans_a_third_repeat():
    ordinary = [11, 12, 13, 14, 15, 11, 12, 16, 17, 11, 12, 13, 18]  # "11 12 13" twice: allowed
    assert all(not repetition.banned_next(ordinary[:i]) for i in range(len(ordinary) + 1))
    loop = [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3]
    assert repetition.banned_next(loop) == {4}


def test_the_history_keeps_the_models_own_words_and_the_transcript_what_was_said():
    """The window shows the spoken form; the model's history keeps its written form, cut where the user stopped
    hearing (fed its answers in spoken form, the 1.5B model started writing "one eight0" for 180)."""
    from app.conversation import actions as a
    from app.conversation import events as e
    from app.conversation import history
    from app.conversation.state import ConversationState, Phase

    assert doctest.testmod(history).failed == 0
    state = ConversationState(phase=Phase.SPEAKING, turn_id=1)
    for event in (e.ReplyAudio(1.0, 1, 0, "Three times sixty is one hundred and eighty.", 2.0,
                               "3 × 60 is 180."),
                  e.ReplyAudio(1.1, 1, 1, "It is easy.", 1.0), e.PlaybackProgress(2.0, 1, 3.0),
                  e.ReplyFinished(3.0, 1), e.PlaybackFinished(3.1, 1)):
        state, actions = step(state, event)
    (done,) = [x for x in actions if isinstance(x, a.AppendHistory)]
    assert done.text == "Three times sixty is one hundred and eighty. It is easy."
    assert done.model_text == "3 × 60 is 180. It is easy."
    state = ConversationState(phase=Phase.SPEAKING, turn_id=1, barge_in_at=1.9)
    state, _ = step(state, e.ReplyAudio(1.0, 1, 0, "One two three four five six.", 2.0, "1 2 3 4 5 6."))
    state, _ = step(state, e.PlaybackProgress(1.5, 1, 1.0))
    state, actions = step(state, e.Tick(2.5))  # the barge-in is confirmed half-way through the segment
    (cut,) = [x for x in actions if isinstance(x, a.AppendHistory)]
    assert cut.interrupted and cut.text == "One two three" and cut.model_text == "1 2 3"


def test_each_segment_keeps_its_written_form_in_order():
    generation = Steps(["It is 5 km away. ", "About 3 × 60 minutes."])
    segments, text = speak_all(generation, max_words=60, chunk_tokens=8)
    assert segments == ["It is five kilometers away.", "About three times sixty minutes."]
    assert text.written == ["It is 5 km away.", "About 3 × 60 minutes."]
