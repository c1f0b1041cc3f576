"""Is a spoken reply right, speakable and free of loops? Pure scoring for `cadence bench answers`.

A question (assets/answers/questions.json) lists `accept` patterns (every one must match the reply) and optional
`reject` patterns (none may match), regular expressions over the reply in lower case with hyphens read as spaces
("fifty-six" matches `fifty six`). Replies are scored in the form they were spoken, so numbers are words.

>>> q = Question("a", "math", "What is seven times eight?", "am_adam", (r"fifty six|\\b56\\b",), ())
>>> correct(q, "Seven times eight is fifty-six."), correct(q, "It is fifty-four.")
(True, False)
>>> has_loop("a warm jacket, a hat, a scarf, a hat, a hat, a hat, a hat"), has_loop("Yes, yes. It is eight.")
(True, False)
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.conversation.spoken import unreadable
from app.metrics.wer import normalise

KINDS = ("fact", "math", "units", "howto", "hedge")


@dataclass(frozen=True)
class Question:
    id: str
    kind: str
    text: str
    voice: str
    accept: tuple[str, ...]
    reject: tuple[str, ...] = ()


def load_questions(path: Path) -> list[Question]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    questions = [Question(q["id"], q["kind"], q["text"], q["voice"], tuple(q["accept"]), tuple(q.get("reject", ())))
                 for q in raw]
    for q in questions:
        if q.kind not in KINDS or not q.accept:
            raise ValueError(f"{q.id}: kind must be one of {KINDS} and accept must not be empty")
        for pattern in q.accept + q.reject:
            re.compile(pattern)
    return questions


def _comparable(reply: str) -> str:
    return re.sub(r"\s+", " ", reply.lower().replace("-", " ").replace("’", "'"))


def correct(question: Question, reply: str) -> bool:
    text = _comparable(reply)
    return all(re.search(p, text) for p in question.accept) and not any(re.search(p, text) for p in question.reject)


def has_loop(reply: str, size: int = 4, times: int = 3) -> bool:
    """A `size`-word sequence said `times` times or more, or one word said 4 times in a row. (Three words said
    three times can be a careful answer: "a first degree burn ... a second degree burn ...".)"""
    words = normalise(reply).split()
    grams = [tuple(words[i:i + size]) for i in range(len(words) - size + 1)]
    if any(grams.count(g) >= times for g in set(grams)):
        return True
    return any(len(set(words[i:i + 4])) == 1 for i in range(len(words) - 3))


def markup(reply: str) -> list[str]:
    """What a voice would spell out or stumble on (symbols, markup characters)."""
    return unreadable(reply)


def align(questions: Sequence[Question], transcripts: Sequence[str], min_recall: float = 0.6) -> list[int | None]:
    """For each question, the index of the turn that asked it (in order), or None when no turn did. A turn asked a
    question when it holds most of the question's words: a question the pipeline merged into the turn before, or
    never heard, is not matched with the next question's reply."""
    out: list[int | None] = []
    start = 0
    for question in questions:
        words = set(normalise(question.text).split())
        found = None
        for i in range(start, min(start + 3, len(transcripts))):
            if len(words & set(normalise(transcripts[i]).split())) >= min_recall * len(words):
                found = i
                break
        out.append(found)
        if found is not None:
            start = found + 1
    return out
