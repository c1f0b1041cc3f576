"""LLM engine on llama.cpp (llama-cpp-python's low-level API): chunked generation over one KV cache.

The generator keeps a mirror of the tokens in the context's KV cache. A new prompt is compared with it and only
the differing suffix is evaluated (the conversation-prefix cache across turns); a cancelled or speculative reply
just leaves tokens that the next prompt truncates away; when the history drops its oldest turns, the dropped
stretch is cut out of the cache and the rest moved back (a context shift) rather than evaluated again. Steps sample
one token per decode and pause between chunks with nothing to redo. End of generation is the vocabulary's
end-of-generation set (`llama_vocab_is_eog`). A repetition guard (engines/repetition.py) turns away a token that
would repeat a 4-token sequence a third time; a reply that keeps trying ends ("loop", cut like the length limit).
The text end-of-utterance score (engines/llama_generation.py) is read from the same
prefill that evaluates the reply's prompt (see docs/engines-llm.md)."""
from __future__ import annotations

import copy
import ctypes
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import llama_cpp
import numpy as np

from engines.chat_template import ChatTemplate
from engines.llama_generation import MIN_SHIFT, LlamaGeneration
from engines.llama_loader import LlmLoadError, load_model, model_meta, new_context, repack_by_default
from engines.protocols import Message
from engines.sampling import choose


class LlamaGenerator:
    """A GGUF chat model on llama.cpp. One context, one sequence: one generation at a time (a new `start()` or
    `end_of_utterance_score()` supersedes the running one)."""

    def __init__(self, model_path: str | Path, *, n_threads: int = 2, n_gpu_layers: int = 0, n_ctx: int = 4096,
                 chat_format: str | None = None, seed: int | None = None, temperature: float = 0.0,
                 top_k: int = 40, n_batch: int = 512, repack: bool | None = None, name: str | None = None,
                 repetition_guard: bool = True):
        """`n_gpu_layers` −1 offloads every layer (CUDA builds). `repack`: llama.cpp's CPU weight repacking (extra
        buffer types); None = on unless the CPU has AMX (`repack_by_default`)."""
        path = Path(model_path)
        repack = repack_by_default() if repack is None else repack
        self._model, self._ctx = load_model(path, n_gpu_layers, repack, n_ctx, n_batch, n_threads)
        self._context_args = (path, n_gpu_layers, n_ctx, n_batch, n_threads)
        self._parent: LlamaGenerator | None = None  # a fork shares its parent's weights (see fork())
        # llama.cpp may return from a decode before a GPU backend has finished it (see DeviceSynchronized)
        self.asynchronous = n_gpu_layers != 0 and bool(llama_cpp.llama_supports_gpu_offload())
        self.name = name or path.stem
        self.temperature, self.top_k, self.repetition_guard = temperature, top_k, repetition_guard
        self.n_ctx = llama_cpp.llama_n_ctx(self._ctx)
        vocab, mem = llama_cpp.llama_model_get_vocab(self._model), llama_cpp.llama_get_memory(self._ctx)
        assert vocab is not None and mem is not None, "a loaded model has a vocabulary, its context a KV memory"
        self._vocab, self._mem = vocab, mem
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self._n_batch = n_batch
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._rng = np.random.default_rng(seed)
        self._pieces: dict[int, bytes] = {}
        self._cache: list[int] = []  # the tokens in the KV cache, in order
        self._last: np.ndarray | None = None  # logits after the last cached token, when known
        self._owner: LlamaGeneration | None = None
        self.decode_calls = 0  # llama_decode calls, and tokens they evaluated (for tests and metrics)
        self.decoded_tokens = 0
        self.shifted_tokens = 0  # tokens kept by closing a gap in the cache (context shift) instead of evaluated
        self._bos_text = self._token_text(cast(int, llama_cpp.llama_vocab_bos(self._vocab)))  # ctypes gives an int
        marks = {mark: self._tokenize(mark, False) for mark in (".", "?", "!")}
        self._sentence_ends = [ids[0] for ids in marks.values() if len(ids) == 1]
        eos_text = self._token_text(cast(int, llama_cpp.llama_vocab_eos(self._vocab)))
        source = model_meta(self._model, "tokenizer.chat_template")
        self.template = ChatTemplate.from_metadata({"tokenizer.chat_template": source}, chat_format or None,
                                                   self._bos_text, eos_text)

    @classmethod
    def from_catalog(cls, model_id: str, **kw) -> LlamaGenerator:
        """Load a catalog LLM through the model store (verified files; ModelError when missing or corrupt)."""
        from engines.store import ModelCorrupt, ensure

        files = ensure(model_id)
        if files.entry.kind != "llm":
            raise ValueError(f"{model_id!r} is a {files.entry.kind} model, not an LLM")
        kw.setdefault("chat_format", files.entry.chat_format or None)
        kw.setdefault("name", model_id)
        try:
            return cls(files.file(), **kw)
        except LlmLoadError as exc:
            raise ModelCorrupt(model_id, str(exc), f"cadence models install --force {model_id}") from None

    # ---- public API ---------------------------------------------------------------------------------------

    def start(self, messages: Sequence[Message], max_tokens: int = 256) -> LlamaGeneration:
        """A reply to `messages` (the last one is the user's). Nothing is evaluated until prefill/step/eou_score."""
        head_text, tail_text = self.template.split(messages)
        add_bos = not (self._bos_text and head_text.startswith(self._bos_text))
        head, tail = self._tokenize(head_text, add_bos), self._tokenize(tail_text, False)
        if not head or not tail:
            raise ValueError("the chat template produced an empty prompt part")
        if len(head) + len(tail) >= self.n_ctx:
            raise ValueError(f"prompt of {len(head) + len(tail)} tokens does not fit the context ({self.n_ctx})")
        self._owner = LlamaGeneration(self, head, tail, max_tokens)
        return self._owner

    def end_of_utterance_score(self, messages_until_user_text: Sequence[Message]) -> float:
        """log10 P(end-of-message token | the conversation up to the user's text). Leaves the prompt head in the
        cache, so a following `start()` of the same messages only evaluates the assistant header."""
        return self.start(messages_until_user_text, 0).eou_score()

    def reset(self) -> None:
        """Forget the KV cache (the next prompt is evaluated cold)."""
        self._owner = None
        self._truncate(0)

    def set_sampling(self, temperature: float, seed: int | None = None) -> None:
        """Temperature 0 is greedy; above it, top-k sampling from a generator seeded with `seed`."""
        self.temperature = temperature
        self._rng = np.random.default_rng(seed)

    def set_threads(self, n_threads: int, n_threads_batch: int | None = None) -> None:
        assert self._ctx is not None, "the generator is closed"
        llama_cpp.llama_set_n_threads(self._ctx, n_threads, n_threads_batch or n_threads)

    @property
    def cached_tokens(self) -> int:
        return len(self._cache)

    def synchronize(self) -> None:
        """Wait for the decodes launched on a GPU backend (a no-op when every layer is on the CPU)."""
        if self.asynchronous and self._ctx is not None:
            llama_cpp.llama_synchronize(self._ctx)

    def fork(self) -> LlamaGenerator:
        """Another conversation on the same weights: its own context, KV cache and generation (one context costs
        its KV cache, ~120 MB for the 1.5B at 4096 tokens), starting with a copy of this one's cache. Close forks
        before the generator they came from."""
        assert self._model is not None, "the generator is closed"
        twin = copy.copy(self)
        twin._parent, twin._ctx = self, new_context(self._model, *self._context_args)
        twin._mem = llama_cpp.llama_get_memory(twin._ctx)
        twin._batch = llama_cpp.llama_batch_init(self._n_batch, 0, 1)
        twin._rng, twin._pieces, twin._cache, twin._last, twin._owner = np.random.default_rng(), {}, [], None, None
        twin.decode_calls = twin.decoded_tokens = twin.shifted_tokens = 0
        if self._cache and self._ctx is not None:  # start from this cache (a system prompt evaluated once serves all)
            seq = llama_cpp.llama_seq_id(0)
            size = llama_cpp.llama_state_seq_get_size(self._ctx, seq)
            state = (ctypes.c_uint8 * size)()
            if llama_cpp.llama_state_seq_get_data(self._ctx, state, size, seq) == size and \
                    llama_cpp.llama_state_seq_set_data(twin._ctx, state, size, seq) == size:
                twin._cache = list(self._cache)
                twin._last = None if self._last is None else self._last.copy()
        return twin

    def close(self) -> None:
        if self._ctx is not None:
            assert self._model is not None, "the model and its context are freed together"
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._ctx)
            if self._parent is None:  # a fork's weights are its parent's
                llama_cpp.llama_model_free(self._model)
            self._ctx = self._model = None
            self._owner = None

    def __del__(self) -> None:
        try:
            if getattr(self, "_ctx", None) is not None:
                self.close()
        except Exception:  # interpreter shutdown: the bindings may already be gone
            pass

    # ---- KV cache ------------------------------------------------------------------------------------------

    def _tokenize(self, text: str, add_bos: bool) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 4
        buf = (llama_cpp.llama_token * cap)()
        n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, cap, add_bos, True)
        if n < 0:
            cap = -n
            buf = (llama_cpp.llama_token * cap)()
            n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, cap, add_bos, True)
        return list(buf[:n])

    def _token_text(self, token: int) -> str:
        return llama_cpp.llama_vocab_get_text(self._vocab, token).decode("utf-8", "replace") if token >= 0 else ""

    def common_prefix(self, prompt: list[int]) -> int:
        """How many of `prompt`'s first tokens the KV cache holds already."""
        n = min(len(self._cache), len(prompt))
        return next((i for i in range(n) if self._cache[i] != prompt[i]), n)

    def _sync(self, prompt: list[int], rows: set[int]) -> tuple[dict[int, np.ndarray], int]:
        """Make the KV cache hold exactly `prompt`, evaluating as little as possible; return the logits after
        each position in `rows`, and the position evaluation started from (= tokens reused)."""
        common = self.common_prefix(prompt)
        if common < len(self._cache):
            common += self._close_gap(prompt, common)
        found: dict[int, np.ndarray] = {}
        if common == len(self._cache) and common and self._last is not None and common - 1 in rows:
            found[common - 1] = self._last
        need = [r for r in rows if r not in found]
        start = self._truncate(min([common, *need]))
        out = self._decode(prompt[start:], {r - start for r in need})
        found.update({r: out[r - start] for r in need})
        return found, start

    def _close_gap(self, prompt: list[int], common: int) -> int:
        """Context shift: when the prompt is the cache with a stretch removed after `common` (the history dropped
        its oldest turns), drop that stretch from the KV cache and move what follows it back, so the rest of the
        conversation is not evaluated again. Returns how many more prompt tokens the cache now holds."""
        cache, tail = self._cache, prompt[common:]
        if len(tail) < MIN_SHIFT or not llama_cpp.llama_memory_can_shift(self._mem):
            return 0
        best_b, best_k = -1, 0
        for b in range(common + 1, len(cache) - MIN_SHIFT + 1):
            if cache[b] != tail[0]:
                continue
            k = 0
            limit = min(len(cache) - b, len(tail))
            while k < limit and cache[b + k] == tail[k]:
                k += 1
            if k > best_k:
                best_b, best_k = b, k
        if best_k < MIN_SHIFT:
            return 0
        gap = best_b - common
        self._last = None
        end = best_b + best_k
        if not llama_cpp.llama_memory_seq_rm(self._mem, -1, end, -1) or \
                not llama_cpp.llama_memory_seq_rm(self._mem, -1, common, best_b):
            llama_cpp.llama_memory_clear(self._mem, True)
            self._cache.clear()
            return -common
        llama_cpp.llama_memory_seq_add(self._mem, 0, best_b, end, -gap)
        self._cache = cache[:common] + cache[best_b:end]
        self.shifted_tokens += best_k
        return best_k

    def _truncate(self, n: int) -> int:
        """Drop cached tokens from position n on; returns where the cache now ends (0 if it had to be cleared)."""
        if n >= len(self._cache):
            return len(self._cache)
        self._last = None
        if n > 0 and llama_cpp.llama_memory_seq_rm(self._mem, -1, n, -1):
            del self._cache[n:]
            return n
        llama_cpp.llama_memory_clear(self._mem, True)  # recurrent/hybrid models cannot drop a partial suffix
        self._cache.clear()
        return 0

    def _decode(self, tokens: list[int], rows: set[int]) -> dict[int, np.ndarray]:
        """Evaluate `tokens` after the cache (in n_batch chunks); return copies of the logits at `rows`."""
        out: dict[int, np.ndarray] = {}
        b = self._batch
        for i in range(0, len(tokens), self._n_batch):
            chunk = tokens[i:i + self._n_batch]
            pos0 = len(self._cache)
            for j, tok in enumerate(chunk):
                b.token[j], b.pos[j], b.n_seq_id[j] = tok, pos0 + j, 1
                b.seq_id[j][0] = 0
                b.logits[j] = (i + j) in rows
            b.n_tokens = len(chunk)
            ctx = self._ctx
            assert ctx is not None, "the generator is closed"
            rc = llama_cpp.llama_decode(ctx, b)
            if rc != 0:
                llama_cpp.llama_memory_clear(self._mem, True)  # unknown state: start over next time
                self._cache.clear()
                self._last = None
                raise RuntimeError(f"llama_decode failed with code {rc} at position {pos0}")
            self.decode_calls += 1
            self.decoded_tokens += len(chunk)
            self._cache.extend(chunk)
            for j in range(len(chunk)):
                if i + j in rows:
                    ptr = llama_cpp.llama_get_logits_ith(ctx, j)
                    out[i + j] = np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).copy()
        if tokens:
            self._last = out.get(len(tokens) - 1)
        return out

    def _decode_one(self, token: int) -> np.ndarray:
        return self._decode([token], {0})[0]

    # ---- tokens --------------------------------------------------------------------------------------------

    def _choose(self, logits: np.ndarray, banned: set[int] | frozenset[int] = frozenset()) -> int:
        return choose(logits, self.temperature, self.top_k, self._rng, banned)

    def _is_end(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def _piece(self, token: int) -> bytes:
        """The token's bytes (control tokens render as nothing); may be part of a multi-byte character."""
        piece = self._pieces.get(token)
        if piece is None:
            buf = ctypes.create_string_buffer(64)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, 64, 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, -n, 0, False)
            piece = self._pieces[token] = buf.raw[:n]
        return piece
