"""One spoken reply: the LLM generation and the TTS voice wired into the scheduler's interleaved stream.

`produce` asks the generation for a bounded number of tokens; for the first chunk it stops as soon as the segmenter
can cut a first speakable segment, so the first TTS call starts on a short clause. Each segment is put into spoken
form (`spoken.speakable`: no markdown, LaTeX, symbols or digits reach the voice) as it is cut, and that form is what
is spoken, shown and kept in the history. A reply ends on a sentence: past `max_words` it stops at the next
sentence end, and when the generation was cut (its length limit, a repetition loop) the unfinished last sentence
is not spoken. `render` synthesizes one segment into the playback buffer and reports when its first audio was
ready. Nothing here knows about turn-taking."""
from __future__ import annotations

import re
import time
from collections.abc import Callable

import numpy as np

from app.audio.playback import PlaybackBuffer
from app.conversation.segmenter import split
from app.conversation.spoken import speakable
from app.stages import Stage
from engines.protocols import Generation, Synthesizer
from scheduler import CancelToken, InterleavedStream, Priority, Scheduler, StreamSummary, UnitResult

FIRST_CHUNK_STEP = 2  # tokens per inner step while looking for the first clause
LATER_CHUNK_STEP = 4  # tokens per inner step afterwards (the cancel token is checked between steps)
FIRST_SEGMENT_MAX_CHARS = 48  # a first sentence with no clause mark is cut at a space after this many characters
SILENCE = 10 ** (-60 / 20)  # below -60 dBFS the user hears nothing yet
_ENDS_SENTENCE = re.compile(r"[.!?…][\"')\]]*\s*$")


def split_reply(buffer: str, first: bool, final: bool) -> tuple[list[str], str]:
    """The segmenter, with the first segment bounded: a long first sentence is not waited for."""
    return split(buffer, first, final, max_chars=FIRST_SEGMENT_MAX_CHARS if first else None)


class Reply:
    def __init__(self, scheduler: Scheduler, turn: int, generation: Callable[[], Generation], tts: Synthesizer,
                 playback: PlaybackBuffer, *, on_segment: Callable[[int, str, float], None],
                 on_finished: Callable[[StreamSummary], None], on_error: Callable[[BaseException], None],
                 max_words: int = 60):
        self.turn = turn
        self._generation = generation  # the prefill unit creates it on the device lane, before the first step
        self.tts = tts
        self.playback = playback
        self._text = ""  # everything produced so far
        self._first_cut = False
        self._audible = False
        self.max_words = max_words
        self.cut = False  # the generation stopped mid-reply: its unfinished last sentence is not spoken
        self.first_token_at: float | None = None
        self.stream = InterleavedStream(
            scheduler, turn, produce=self._produce, split=self._split, render=self._render, lead=playback.lead_s,
            produce_stage=Stage.LLM, render_stage=Stage.TTS, produce_priority=Priority.LLM,
            render_priority=Priority.TTS,
            on_segment_rendered=on_segment, on_finished=on_finished, on_error=on_error)

    def start(self) -> Reply:
        self.stream.start()
        return self

    def cancel(self) -> None:
        self.stream.cancel(wait=False)

    def _produce(self, max_tokens: int, token: CancelToken) -> UnitResult:
        had_token = self.first_token_at is not None
        text, finished, tokens = self._generate(max_tokens, token)
        meta: dict[str, float] = {"tokens": tokens}
        if not had_token and self.first_token_at is not None:
            meta["first_token_at"] = self.first_token_at
        return UnitResult((text, finished), meta)

    def _generate(self, max_tokens: int, token: CancelToken) -> tuple[str, bool, int]:
        """A chunk of up to `max_tokens`, a few tokens per inner step: a cancelled reply stops within a step (not at
        the end of a 96-token chunk), and the first chunk stops as soon as a first segment can be cut."""
        generation = self._generation()
        parts, used, tokens, finished = [], 0, 0, False
        while used < max_tokens and not finished and not token.cancelled:
            size = LATER_CHUNK_STEP if self._first_cut else FIRST_CHUNK_STEP
            step = generation.step(min(size, max_tokens - used))
            used, tokens = used + max(step.tokens, 1), tokens + step.tokens
            finished, self.cut = step.finished, step.cut
            parts.append(step.text)
            self._note(step.text)
            if not finished and len(self._text.split()) >= self.max_words and _ENDS_SENTENCE.search(self._text):
                generation.cancel()  # long enough, and a sentence just ended: the reply ends here
                finished = True
            if not self._first_cut and split_reply(self._text, first=True, final=False)[0]:
                self._first_cut = True
                break
        return "".join(parts), finished, tokens

    def _split(self, buffer: str, first: bool, final: bool) -> tuple[list[str], str]:
        """The segments in spoken form; a cut generation's unfinished last sentence is dropped (a reply that is
        nothing but that sentence still says it: better a cut answer than silence)."""
        segments, rest = split_reply(buffer, first, final and not self.cut)
        if final and self.cut:
            if not segments and first and rest.strip():
                segments = [rest.strip()]
            rest = ""
        return [text for text in map(speakable, segments) if text], rest

    def _note(self, text: str) -> None:
        if text and self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self._text += text

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
            media_s += self.playback.push(self.turn, samples, chunk.sample_rate)
        return UnitResult(media_s, {"first_audio_s": first_audio_s})
