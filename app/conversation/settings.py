"""The settings of one conversation session, as the session uses them (seconds, characters), built from the
config in one place (`app.config.runtime_settings`)."""
from __future__ import annotations

from dataclasses import dataclass

from app.conversation.turn_rule import TurnSettings
from app.conversation.vad_segmenter import VadSettings


@dataclass(frozen=True, slots=True)
class SessionSettings:
    turn: TurnSettings = TurnSettings()
    vad: VadSettings = VadSettings()
    max_reply_tokens: int = 160
    max_spoken_words: int = 60  # past this, the reply ends at its next sentence end
    history_chars: int = 9000  # the history kept in the prompt (oldest turns dropped first; system prompt kept)
    naive: bool = False  # a plain pipeline to compare with: nothing before the end of turn, whole first sentence
