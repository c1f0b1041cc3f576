"""The text side of one reply, without threads: chunks of LLM text in, speakable segments out.

`ReplyText.generate` asks the generation for a chunk of up to N tokens, a few tokens per inner step (a cancelled
reply stops within a step; the first chunk stops as soon as a first segment can be cut, so the first TTS call
starts on a short clause). `ReplyText.split` cuts the buffer into segments in spoken form (`spoken.speakable`: no
markdown, LaTeX, symbols or digits reach the voice), and that form is what is spoken, shown and kept. A reply ends
on a sentence: past `max_words` it stops at the next sentence end, and when the generation was cut (its length
limit, a repetition loop) the unfinished last sentence is not spoken. `speak_all` runs the whole loop at once (the
answers benchmark's text mode, tests); `app/conversation/reply.py` runs it on the scheduler, interleaved with TTS."""
from __future__ import annotations

import re
import time
from collections.abc import Callable

from app.conversation.segmenter import split
from app.conversation.spoken import speakable
from engines.protocols import Generation

FIRST_CHUNK_STEP = 1  # tokens per inner step while looking for the first clause (the cut is seen at once)
LATER_CHUNK_STEP = 4  # tokens per inner step afterwards (the cancel token is checked between steps)
FIRST_SEGMENT_MAX_CHARS = 48  # a first sentence with no clause mark is cut at a space after this many characters
FIRST_PHRASE_WORDS = 3  # ... or before a phrase starter after this many words ("Romeo and Juliet | was written")
_ENDS_SENTENCE = re.compile(r"[.!?…][\"')\]]*\s*$")


def split_reply(buffer: str, first: bool, final: bool) -> tuple[list[str], str]:
    """The segmenter, with the first segment bounded: a long first sentence is not waited for."""
    return split(buffer, first, final, max_chars=FIRST_SEGMENT_MAX_CHARS if first else None,
                 phrase_words=FIRST_PHRASE_WORDS if first else None)


class ReplyText:
    def __init__(self, max_words: int = 60, whole_sentences: bool = False):
        self.max_words = max_words
        self.whole_sentences = whole_sentences  # a first segment is a whole sentence (the naive pipeline)
        self.text = ""  # everything the generation produced so far (written form)
        self.cut = False  # the generation stopped mid-reply: its unfinished last sentence is not spoken
        self.first_token_at: float | None = None
        self.written: list[str] = []  # each segment as the model wrote it, in the order `split` returned them
        self._first_cut = False

    def generate(self, generation: Generation, max_tokens: int, cancelled: Callable[[], bool] = lambda: False,
                 should_yield: Callable[[], bool] = lambda: False) -> tuple[str, bool, int]:
        """(text, finished, tokens) of the next chunk of up to `max_tokens` tokens. `should_yield` ends the chunk
        early once it has some text (a more urgent unit waits; the next chunk goes on from here)."""
        parts, used, tokens, finished = [], 0, 0, False
        while used < max_tokens and not finished and not cancelled() and not (tokens and should_yield()):
            size = LATER_CHUNK_STEP if self._first_cut else FIRST_CHUNK_STEP
            step = generation.step(min(size, max_tokens - used))
            used, tokens = used + max(step.tokens, 1), tokens + step.tokens
            finished, self.cut = step.finished, step.cut
            parts.append(step.text)
            if step.text and self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            self.text += step.text
            if not finished and len(self.text.split()) >= self.max_words and _ENDS_SENTENCE.search(self.text):
                generation.cancel()  # long enough, and a sentence just ended: the reply ends here
                finished = True
            if not self._first_cut and split_reply(self.text, not self.whole_sentences, final=False)[0]:
                self._first_cut = True
                break
        return "".join(parts), finished, tokens

    def split(self, buffer: str, first: bool, final: bool) -> tuple[list[str], str]:
        """The segments in spoken form; a cut generation's unfinished last sentence is dropped (a reply that is
        nothing but that sentence still says it: better a cut answer than silence)."""
        segments, rest = split_reply(buffer, first and not self.whole_sentences, final and not self.cut)
        if final and self.cut:
            if not segments and first and rest.strip():
                segments = [rest.strip()]
            rest = ""
        pairs = [(said, wrote) for said, wrote in ((speakable(text), text) for text in segments) if said]
        self.written += [wrote for _, wrote in pairs]
        return [said for said, _ in pairs], rest


def speak_all(generation: Generation, max_words: int = 60, chunk_tokens: int = 32) -> tuple[list[str], ReplyText]:
    """Every segment the reply would speak, generated at once (no voice, no scheduler)."""
    reply = ReplyText(max_words)
    buffer, segments, finished, first = "", [], False, True
    while not finished:
        text, finished, _ = reply.generate(generation, chunk_tokens)
        found, buffer = reply.split(buffer + text, first, finished)
        first = first and not found
        segments += found
    return segments, reply
