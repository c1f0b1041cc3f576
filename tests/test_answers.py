"""The answers benchmark's question set and scoring: enough questions of every kind, spoken by voices the agent
does not use; every question's reference answer is accepted and typical wrong answers are not; loops, symbols and
the question-to-turn alignment are detected as the benchmark needs. The benchmark itself: test_bench.py."""
from __future__ import annotations

import doctest
import json

import pytest

from app.config import Config
from app.metrics import answers
from app.metrics.answers import KINDS, Question, align, correct, has_loop, load_questions, markup
from app.paths import asset

PATH = asset("answers/questions.json")


@pytest.fixture(scope="module")
def questions() -> list[Question]:
    return load_questions(PATH)


def test_the_examples_in_the_docstring_hold():
    assert doctest.testmod(answers).failed == 0


def test_sixty_questions_or_more_of_every_kind_by_other_voices(questions):
    assert len(questions) >= 60 and len({q.id for q in questions}) == len(questions)
    counts = {kind: sum(q.kind == kind for q in questions) for kind in KINDS}
    assert all(n >= 5 for n in counts.values()), counts
    assert Config().models.voice not in {q.voice for q in questions}  # never the agent's own voice


def test_every_reference_answer_is_accepted(questions):
    reference = {item["id"]: item["answer"] for item in json.loads(PATH.read_text(encoding="utf-8"))}
    wrong = [(q.id, reference[q.id]) for q in questions if not correct(q, reference[q.id])]
    assert wrong == []


@pytest.mark.parametrize("qid, reply", [
    ("a01", "The tallest mountain in Africa is Mount Everest, which is eight thousand meters tall."),
    ("a02", "A spider has four legs."),
    ("a36", "Three times sixty is one hundred twenty."),
    ("a23", "A tomato is a vegetable."),
    ("a59", "The weather in Paris tomorrow will be sunny with a chance of showers."),
    ("a61", "Your name is John."),
    ("a01", ""),
])
def test_wrong_answers_are_not_accepted(questions, qid, reply):
    question = next(q for q in questions if q.id == qid)
    assert not correct(question, reply)


def test_loops_and_symbols_are_flagged():
    assert has_loop("You should pack a warm jacket, a hat, a scarf, a hat, a hat, a hat, a hat, a hat.")
    assert has_loop("A pound is a unit of measurement, and a pound is a unit of measurement, a pound is a unit of it.")
    assert not has_loop("Hold it under cool water. Then cover it. Then rest it. Then check it again tomorrow.")
    assert markup("1. Stand up **straight**") == ["*", "*", "*", "*"]
    assert markup("Stand up straight, then breathe out.") == []


def test_turns_are_matched_to_the_questions_they_answer(questions):
    asked = questions[:4]
    heard = [asked[0].text, asked[1].text + " " + asked[2].text, asked[3].text]  # two questions merged into one
    assert align(asked, heard) == [0, 1, None, 2]
    assert align(asked, []) == [None] * 4
