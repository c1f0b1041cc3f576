"""One spoken reply: the LLM generation and the TTS voice wired into the scheduler's interleaved stream.

`produce` asks the generation for a bounded chunk and `split` cuts it into segments in spoken form (both from
`ReplyText`, app/conversation/reply_text.py: short first clause, spoken-style text, a reply that ends on a
sentence). `render` synthesizes one segment into the playback buffer and reports when its first audio was ready.
Nothing here knows about turn-taking."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from app.audio.playback import PlaybackBuffer
from app.conversation.reply_text import ReplyText
from app.stages import Stage
from engines.protocols import Generation, Synthesizer
from scheduler import CancelToken, InterleavedStream, Priority, Scheduler, StreamSummary, UnitResult

SILENCE = 10 ** (-60 / 20)  # below -60 dBFS the user hears nothing yet


class Reply:
    def __init__(self, scheduler: Scheduler, turn: int, generation: Callable[[], Generation], tts: Synthesizer,
                 playback: PlaybackBuffer, *, on_segment: Callable[[int, str, float], None],
                 on_finished: Callable[[StreamSummary], None], on_error: Callable[[BaseException], None],
                 max_words: int = 60, held: bool = False, meta: dict | None = None, whole_sentences: bool = False,
                 llm_lane: str | None = None):
        self.turn = turn
        self._generation = generation  # the prefill unit creates it on the device lane, before the first step
        self.tts = tts
        self.playback = playback
        self._audible = False
        self._discarded = False
        self._push_lock = threading.Lock()  # a discarded reply pushes nothing more, not even a chunk in flight
        self.text = ReplyText(max_words, whole_sentences)
        self.stream = InterleavedStream(
            scheduler, turn, produce=self._produce, split=self.text.split, render=self._render, lead=playback.lead_s,
            produce_stage=Stage.LLM, render_stage=Stage.TTS, produce_priority=Priority.LLM,
            render_priority=Priority.TTS, produce_lane=llm_lane,
            on_segment_rendered=on_segment, on_finished=on_finished, on_error=on_error, held=held, meta=meta)

    def start(self) -> Reply:
        self.stream.start()
        return self

    def cancel(self) -> None:
        self.stream.cancel(wait=False)

    def release(self) -> None:
        """A held reply (prepared before the turn was known to be over) goes on past its first segment."""
        self.stream.release()

    def discard(self) -> None:
        """Stop this reply's own units only (the turn's other work goes on); it pushes no more audio."""
        with self._push_lock:
            self._discarded = True
        self.stream.discard()

    def _produce(self, max_tokens: int, token: CancelToken) -> UnitResult:
        had_token = self.text.first_token_at is not None
        # a more urgent unit waiting on the lane (the recognizer) ends the chunk after the current step
        text, finished, tokens = self.text.generate(self._generation(), max_tokens, lambda: token.cancelled,
                                                    lambda: token.yield_requested)
        meta: dict[str, float] = {"tokens": tokens}
        if not had_token and self.text.first_token_at is not None:
            meta["first_token_at"] = self.text.first_token_at
        return UnitResult((text, finished), meta)

    def _render(self, segment: str, token: CancelToken) -> UnitResult | float:
        started = time.perf_counter()
        first_audio_s = None
        media_s = 0.0
        for chunk in self.tts.synthesize(segment):
            if token.cancelled:
                break
            samples = chunk.samples
            if not self._audible:  # the reply starts with its first audible sample (voices lead in with silence)
                loud = np.nonzero(np.abs(samples) > SILENCE)[0]
                if len(loud) == 0:
                    continue
                samples, self._audible = samples[loud[0]:], True
            if first_audio_s is None:
                first_audio_s = time.perf_counter() - started
            with self._push_lock:
                if self._discarded:
                    break
                media_s += self.playback.push(self.turn, samples, chunk.sample_rate)
        return UnitResult(media_s, {"first_audio_s": first_audio_s})
