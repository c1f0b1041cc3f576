"""Chat history that keeps only what the user heard, and trims to a context budget.

``heard_text`` cuts a reply at the word that was playing when playback stopped. Within a segment,
words are apportioned time by character offset: a segment of ``n`` characters lasting ``d``
seconds reaches character ``i`` at ``d * i / n``. A word counts as heard once playback reached its
first character (the user heard at least its start). Simple, and off by at most a word or so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

Role = Literal["user", "assistant"]
_WORD = re.compile(r"\S+")


def heard_text(segments: Sequence[tuple[str, float]], played_s: float) -> str:
    """The part of ``segments`` (text, duration_s), in play order, heard after ``played_s``.

    >>> heard_text([("Hello there.", 1.0), ("How are you?", 1.0)], 1.5)
    'Hello there. How are'
    >>> heard_text([("Hello there.", 1.0)], 0.0)
    ''
    """
    heard: list[str] = []
    remaining = played_s
    for text, duration_s in segments:
        if remaining <= 0:
            break
        if remaining >= duration_s:
            heard.append(text.strip())
            remaining -= duration_s
            continue
        position = len(text) * remaining / duration_s
        started = [m for m in _WORD.finditer(text) if m.start() < position]
        if started:
            heard.append(text[started[0].start():started[-1].end()])
        break
    return " ".join(part for part in heard if part)


def heard_both(segments: Sequence[tuple[str, str, float]], played_s: float) -> tuple[str, str]:
    """``heard_text`` of segments (spoken, written, duration_s), and the written form cut at the same point (the
    segment playing when playback stopped keeps the same share of its written words as of its spoken words).

    >>> heard_both([("Three times sixty.", "3 × 60.", 1.0), ("Easy.", "Easy.", 1.0)], 2.0)
    ('Three times sixty. Easy.', '3 × 60. Easy.')
    >>> heard_both([("One two three four.", "1 2 3 4.", 1.0)], 0.5)
    ('One two three', '1 2 3')
    """
    spoken, written, remaining = [], [], played_s
    for said, wrote, duration_s in segments:
        if remaining <= 0:
            break
        part = heard_text([(said, duration_s)], remaining)
        words, wrote = said.split(), (wrote or said).split()
        keep = len(wrote) if remaining >= duration_s else -(-len(part.split()) * len(wrote) // max(1, len(words)))
        spoken.append(part)
        written.append(" ".join(wrote[:keep]))
        remaining -= duration_s
    return " ".join(part for part in spoken if part), " ".join(part for part in written if part)


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    text: str
    interrupted: bool = False


@dataclass(frozen=True, slots=True)
class History:
    """An immutable chat history: a system prompt and alternating user/assistant messages."""

    system: str = ""
    messages: tuple[Message, ...] = ()

    def append(self, role: Role, text: str, interrupted: bool = False) -> History:
        """Add a message. Empty text is dropped; a message of the same role as the last one is
        merged into it (a user who barged in before hearing anything keeps one user message)."""
        text = text.strip()
        if not text:
            return self
        if self.messages and self.messages[-1].role == role:
            last = self.messages[-1]
            merged = Message(role, f"{last.text} {text}", interrupted)
            return replace(self, messages=self.messages[:-1] + (merged,))
        return replace(self, messages=self.messages + (Message(role, text, interrupted),))

    def without_unanswered(self) -> History:
        """The history without its last message when that is the user's (a question whose reply failed)."""
        if self.messages and self.messages[-1].role == "user":
            return replace(self, messages=self.messages[:-1])
        return self

    def revise_last_reply(self, text: str) -> History:
        """The latest assistant message cut to ``text`` (what the user heard, as a client reports it later; the
        user may have spoken since); empty text drops it."""
        at = next((i for i in range(len(self.messages) - 1, -1, -1) if self.messages[i].role == "assistant"), None)
        if at is None:
            return self
        kept = (Message("assistant", text.strip(), True),) if text.strip() else ()
        return replace(self, messages=self.messages[:at] + kept + self.messages[at + 1:])

    def with_system(self, system: str) -> History:
        """The same conversation under another system prompt (settings changed mid-conversation)."""
        return replace(self, system=system)

    def cost(self, cost: Callable[[str], int] = len, per_message: int = 0) -> int:
        """The size of the history (system prompt included) under ``cost`` (chars by default)."""
        return sum(cost(text) + per_message for text in [self.system, *(m.text for m in self.messages)])

    def trim(self, budget: int, cost: Callable[[str], int] = len, per_message: int = 0) -> History:
        """Drop the oldest turns until the history fits ``budget``.

        The system prompt and the newest message are always kept; a turn (a user message and the
        assistant's answer) goes as a whole, so the kept history never starts with the assistant.
        ``cost`` measures a text (``len`` for characters, or a tokenizer's count), ``per_message``
        adds a chat template's per-message overhead.
        """
        kept = self
        while len(kept.messages) > 1 and kept.cost(cost, per_message) > budget:
            rest = kept.messages[1:]
            while len(rest) > 1 and rest[0].role == "assistant":
                rest = rest[1:]
            kept = replace(kept, messages=rest)
        return kept

    def as_chat(self) -> list[dict[str, str]]:
        """Messages in the ``[{"role": ..., "content": ...}]`` form chat templates take."""
        chat = [{"role": "system", "content": self.system}] if self.system else []
        return chat + [{"role": m.role, "content": m.text} for m in self.messages]
