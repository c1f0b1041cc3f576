"""The reply prepared while the user pauses, before the end of the turn is confirmed (session thread only).

At the onset of a pause the recognizer's text so far (`PauseText`) starts a speculation: the LLM prefills the
prompt (reading the text end-of-utterance score) and the reply's first segment is generated and synthesized into
the playback buffer, held silent. When the core asks for the reply's speculation on the final transcript
(`StartSpeculativeReply`), the running one is adopted if the words are the same (`same_words`); otherwise it is
discarded and a new one starts on the final text. `CommitReply` releases it: the held audio plays at once and the
stream goes on. `CancelReply` (the user resumed, barge-in, a failure) drops it with its audio, which was never
heard. Items from a reply that is no longer the turn's are dropped (`live`), so nothing of a discarded speculation
reaches the conversation; a speculation's segments wait until it is adopted (the core takes reply audio only once
the user has paused).

Each speculation ends with a `speculation` span on the device lane's turn (meta `number`, `used`), and its units
carry `speculation: number`, so the timeline, the metrics and the bench tell used work from wasted work."""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from app.audio.playback import PlaybackBuffer
from app.conversation import events as e
from app.conversation.engine_work import EngineWork, Speculation, Warming
from app.conversation.inbox import FromReply, ReplyEnded, SessionInput
from app.conversation.reply import Reply
from app.metrics.marks import record_span
from app.stages import SPECULATION_LANE, Stage
from scheduler import Scheduler

log = logging.getLogger("cadence.session")
_WORD = re.compile(r"[\w']+")
NewReply = Callable[[int, Speculation], Reply]  # (turn, speculation) -> a held reply, not started


def same_words(a: str, b: str) -> bool:
    """Whether two transcripts say the same words (case, punctuation and spacing aside).

    >>> same_words("What time is it", "what time is it?")
    True
    >>> same_words("What time", "What time is it?")
    False
    >>> same_words("", "")
    False
    """
    words = [w.lower() for w in _WORD.findall(a)]
    return bool(words) and words == [w.lower() for w in _WORD.findall(b)]


@dataclass(eq=False)
class _Held:
    speculation: Speculation
    reply: Reply
    adopted: bool = False  # the final transcript says the same words: this is the turn's reply
    waiting: list[e.Event] = field(default_factory=list)  # its segments, until adopted
    ended: ReplyEnded | None = None  # its stream ended before the commit


@dataclass
class SpeculationCounts:
    used: int = 0
    discarded: int = 0


class Speculations:
    def __init__(self, work: EngineWork, new_reply: NewReply, playback: PlaybackBuffer, scheduler: Scheduler,
                 post: Callable[[SessionInput], None]):
        self.work, self.new_reply, self.playback, self.scheduler, self.post = work, new_reply, playback, scheduler, \
            post
        self.counts = SpeculationCounts()
        self._held: dict[int, _Held] = {}  # turn -> its one speculation
        self._numbers = 0
        self._deferred: dict[int, str] = {}  # the naive pipeline: turn -> the text its reply starts on at commit
        self._warming: Warming | None = None  # the cache warm-up on the words so far

    def reply_of(self, turn: int) -> Reply | None:
        held = self._held.get(turn)
        return held.reply if held else None

    def score_of(self, turn: int) -> tuple[float | None] | None:
        """The text score of the turn's speculation (a 1-tuple: the score may be None), once its prefill read it."""
        held = self._held.get(turn)
        return (held.speculation.score,) if held is not None and held.speculation.scored else None

    def turns(self) -> list[int]:
        return sorted(self._held)

    # ---- starting ------------------------------------------------------------------------------------------
    def warm(self, turn: int, text: str) -> None:
        """The words so far, while the user speaks: warm the LLM's cache with them (a newer text replaces a
        warm-up still queued), unless a speculation already runs for the turn."""
        if turn in self._held:
            return
        if self._warming is not None:
            self._warming.cancel(self.scheduler)
        self._warming = self.work.warm(turn, text)

    def at_pause(self, turn: int, text: str) -> None:
        """The recognizer's text at the onset of a pause: speculate on it (unless the running one says it)."""
        held = self._held.get(turn)
        if held is not None and (held.adopted or same_words(held.speculation.text, text)):
            return
        if held is not None:
            self._discard(held, "words_changed")
        self._start(turn, text)

    def on_transcript(self, turn: int, text: str, later: bool = False) -> None:
        """The core's `StartSpeculativeReply`: adopt the running speculation if it has the same words. `later`
        (the naive pipeline): nothing now, no text score; the reply starts at the commit."""
        if later:
            self._deferred[turn] = text
            self.post(e.EndOfUtteranceScore(self.scheduler.clock(), turn, None))
            return
        held = self._held.get(turn)
        if held is not None and not same_words(held.speculation.text, text):
            self._discard(held, "words_changed")
            held = None
        if held is None:
            held = self._start(turn, text)
        held.adopted = True
        if held.speculation.scored:
            self.post(e.EndOfUtteranceScore(self.scheduler.clock(), turn, held.speculation.score))
        for event in held.waiting:
            self.post(FromReply(held.reply, event))
        held.waiting.clear()

    def _start(self, turn: int, text: str) -> _Held:
        if self._warming is not None:  # queued: dropped; running: it ends before the speculation's prefill starts
            self._warming.cancel(self.scheduler)
            self._warming = None
        self._numbers += 1
        speculation = self.work.speculate(turn, text, self._numbers)
        self.playback.hold(turn)
        held = _Held(speculation, self.new_reply(turn, speculation))
        self._held[turn] = held
        held.reply.start()
        return held

    # ---- results (posted items, on the session thread) -----------------------------------------------------
    def scored(self, speculation: Speculation) -> e.EndOfUtteranceScore | None:
        """The prefill is done and its score read; the score is the turn's if the speculation was adopted (else it
        waits)."""
        speculation.scored = True
        held = self._held.get(speculation.turn_id)
        if held is None or held.speculation is not speculation or not held.adopted:
            return None
        return e.EndOfUtteranceScore(self.scheduler.clock(), speculation.turn_id, speculation.score)

    def hold_back(self, item: FromReply) -> bool:
        """Whether an item of a held reply waits (segments before adoption, the end before the commit)."""
        for held in self._held.values():
            if held.reply is item.source:
                if isinstance(item.item, ReplyEnded):
                    held.ended = item.item
                    return True
                if not held.adopted and isinstance(item.item, e.ReplyAudio):
                    held.waiting.append(item.item)
                    return True
        return False

    # ---- endings -------------------------------------------------------------------------------------------
    def commit(self, turn: int) -> Reply:
        """The turn is over: its speculation becomes the reply (its held audio plays now)."""
        if turn in self._deferred:  # the naive pipeline: the reply starts only now
            self._start(turn, self._deferred.pop(turn)).adopted = True
        held = self._held.pop(turn)
        self.counts.used += 1
        self._mark(held, used=True)
        self.playback.release(turn)
        held.reply.release()
        if held.ended is not None:
            self.post(FromReply(held.reply, held.ended))
        return held.reply

    def cancel(self, turn: int) -> None:
        """The turn's reply is not wanted (the user resumed, barge-in, a failure): drop it and its audio."""
        self._deferred.pop(turn, None)
        held = self._held.pop(turn, None)
        if held is not None:
            self._drop(held, "cancelled")

    def cancel_all(self) -> None:
        for turn in list(self._held) + list(self._deferred):
            self.cancel(turn)

    def _discard(self, held: _Held, why: str) -> None:
        self._held.pop(held.speculation.turn_id, None)
        self._drop(held, why)

    def _drop(self, held: _Held, why: str) -> None:
        turn = held.speculation.turn_id
        held.reply.discard()
        if held.speculation.prefill is not None:
            self.scheduler.cancel_unit(held.speculation.prefill)
        self.playback.flush(turn)  # never heard
        self.counts.discarded += 1
        self._mark(held, used=False, why=why)

    def _mark(self, held: _Held, used: bool, why: str = "") -> None:
        spec = held.speculation
        record_span(self.scheduler, SPECULATION_LANE, Stage.SPECULATION, spec.turn_id, spec.started_at,
                    self.scheduler.clock(), number=spec.number, used=used, **({"why": why} if why else {}))
        log.debug("speculation number=%d used=%s %s", spec.number, used, why)
