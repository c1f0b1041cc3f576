"""One reply of `engines.llm_llama.LlamaGenerator`: the prompt's evaluation (in slices or at once, reusing the cache),
the text end-of-utterance score read from that same evaluation, and the reply's tokens, step by step."""
from __future__ import annotations

import codecs
import time
from typing import TYPE_CHECKING

import llama_cpp
import numpy as np

from engines.protocols import GenerationStep
from engines.repetition import MAX_BANS, banned_next
from engines.sampling import log10_p

if TYPE_CHECKING:
    from engines.llm_llama import LlamaGenerator

MIN_SHIFT = 16  # a context shift must keep at least this many tokens to be worth it


class LlamaGeneration:
    """One reply. Stages: nothing evaluated → head (the prompt up to the user's text; the EOU score is known)
    → whole prompt (ready to sample) → steps. A newer `start()` on the same generator supersedes it."""

    def __init__(self, gen: LlamaGenerator, head: list[int], tail: list[int], max_tokens: int):
        self._gen, self._head, self._prompt = gen, head, head + tail
        self._end = tail[0]  # the template's end-of-message token (a stop token too when it is special)
        self._end_stops = gen._is_end(self._end) or bool(llama_cpp.llama_vocab_is_control(gen._vocab, self._end))
        # The text end-of-utterance score reads the logits after the user's last word: before a final ".", "?" or
        # "!" (the recognizer ends any audio with one, fragments included: "What is the?"), after anything else;
        # after such a mark also the logits that say whether the message ends there (`eou_score`).
        marked = len(head) > 1 and head[-1] in gen._sentence_ends
        self._score_row = len(head) - (2 if marked else 1)
        self._message_row = len(head) - 1 if marked else None
        self._score_rows = {r for r in (self._score_row, self._message_row) if r is not None}
        self._sentence_end = sorted({self._end, *gen._sentence_ends})
        self.prompt_tokens = len(self._prompt)
        self.reused_tokens = 0  # known after prefill
        self.max_tokens = max(0, min(max_tokens, gen.n_ctx - self.prompt_tokens))
        self.generated: list[int] = []
        self.finished = False
        self.finish_reason = ""  # "eog" | "length" | "loop" | "cancelled" | "superseded"
        self.loop_bans = 0  # times the repetition guard turned the greedy choice away
        self.prefill_s = 0.0  # wall time spent evaluating the prompt
        self._stage = 0
        self._evaluated = 0
        self._eou: float | None = None
        self._logits: np.ndarray | None = None  # for the first token
        self._pending: int | None = None  # sampled, not yet in the KV cache
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")

    def _active(self) -> bool:
        if not self.finished and self._gen._owner is not self:
            self.finished, self.finish_reason = True, "superseded"
        return not self.finished

    def eou_score(self) -> float:
        """log10 P(the user's message ends here | the prompt up to their last word): the probability that the next
        token is a sentence end (. ? ! or the end of the message), read before a final . ? or ! the recognizer
        may have added, times, after such a mark, the probability that the message ends there (a complete
        sentence that opens a longer request, "I'm planning a trip to Japan.", scores low: the user goes on).
        About 0 for complete requests, below −3 for fragments ("Could you tell me", "ask not")."""
        if self._eou is None:
            if not self._active():
                raise RuntimeError("this generation was cancelled or superseded before its prefill")
            t0 = time.perf_counter()
            rows, start = self._gen._sync(self._head, self._score_rows)
            self._evaluated += len(self._head) - start
            self._eou = self._score(rows)
            self._stage = 1
            self.prefill_s += time.perf_counter() - t0
        return self._eou

    def _score(self, rows: dict[int, np.ndarray]) -> float:
        score = log10_p(rows[self._score_row], self._sentence_end)
        if self._message_row is not None:
            score += log10_p(rows[self._message_row], [self._end])
        return score

    def prefill_slice(self, max_tokens: int) -> bool:
        """Evaluate up to `max_tokens` more of the prompt (the last ones, with the logits, go in `prefill()`);
        True when what is left is at most one slice, or when a context shift may reuse the cache (whole then)."""
        gen, done = self._gen, self._gen.common_prefix(self._prompt)
        if self._stage == 2 or not self._active() or len(gen._cache) - done >= MIN_SHIFT or \
                self.prompt_tokens - done <= max_tokens:
            return True
        end = done + max_tokens
        self._evaluated += end - gen._sync(self._prompt[:end], set())[1]
        return False

    def prefill(self) -> None:
        """Evaluate the prompt (reusing the cached prefix); the EOU score comes from the same decode."""
        if self._stage == 2 or not self._active():
            return
        t0 = time.perf_counter()
        p = self.prompt_tokens - 1
        rows, start = self._gen._sync(self._prompt, {p} if self._eou is not None else {p, *self._score_rows})
        self._evaluated += self.prompt_tokens - start
        self.reused_tokens = max(0, self.prompt_tokens - self._evaluated)
        if self._eou is None:
            self._eou = self._score(rows)
        self._logits, self._stage = rows[p], 2
        self.prefill_s += time.perf_counter() - t0

    def step(self, max_tokens: int) -> GenerationStep:
        """Up to `max_tokens` more tokens; each costs one single-token decode (none for the prompt again)."""
        if not self._active():
            return GenerationStep("", 0, True)
        if self.max_tokens == 0:
            self.finished, self.finish_reason = True, "length"
            self._release()
            return GenerationStep("", 0, True)
        self.prefill()
        gen, parts, n = self._gen, [], 0
        while n < max_tokens and len(self.generated) < self.max_tokens:
            if self._pending is not None:
                logits = gen._decode_one(self._pending)
                self._pending = None
            else:
                assert self._logits is not None, "prefill() leaves the logits for the first token"
                logits = self._logits
            banned = banned_next(self.generated) if gen.repetition_guard else set()
            token = gen._choose(logits, banned)
            if banned and gen._choose(logits) in banned:
                self.loop_bans += 1
                if self.loop_bans > MAX_BANS:  # it keeps trying to repeat itself: the reply is over
                    self.finished, self.finish_reason = True, "loop"
                    break
            if gen._is_end(token) or (token == self._end and self._end_stops):
                self.finished, self.finish_reason = True, "eog"
                break
            self.generated.append(token)
            self._pending, n = token, n + 1
            parts.append(self._utf8.decode(gen._piece(token)))
        if not self.finished and len(self.generated) >= self.max_tokens:
            self.finished, self.finish_reason = True, "length"
        if self.finished:  # a character cut off by the length limit is dropped, not shown as U+FFFD
            self._release()
        return GenerationStep("".join(parts), n, self.finished, cut=self.finish_reason in ("length", "loop"))

    def cancel(self) -> None:
        if not self.finished:
            self.finished, self.finish_reason = True, "cancelled"
        self._release()

    def _release(self) -> None:
        if self._gen._owner is self:
            self._gen._owner = None
