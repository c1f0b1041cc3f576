"""Picking the next token from a model's logits, and reading a probability from them (pure numpy)."""
from __future__ import annotations

import math

import numpy as np

_LN10 = math.log(10.0)


def choose(logits: np.ndarray, temperature: float, top_k: int, rng: np.random.Generator,
           banned: set[int] | frozenset[int] = frozenset()) -> int:
    """Greedy at temperature 0, else top-k sampling; `banned` tokens are never chosen."""
    if banned:
        logits = logits.copy()
        logits[list(banned)] = -np.inf
    if temperature <= 0.0:
        return int(np.argmax(logits))
    k = min(top_k, len(logits)) if top_k > 0 else len(logits)
    ids = np.argpartition(logits, -k)[-k:]
    z = logits[ids].astype(np.float64) / temperature
    cdf = np.cumsum(np.exp(z - z.max()))
    return int(ids[min(np.searchsorted(cdf, rng.random() * cdf[-1]), k - 1)])


def log10_p(logits: np.ndarray, tokens: int | list[int]) -> float:
    """log10 of the probability of the next token being any of `tokens`."""
    z = logits.astype(np.float64)
    m = z.max()
    log_total = math.log(np.exp(z - m).sum())
    return float((math.log(np.exp(z[tokens] - m).sum()) - log_total) / _LN10)
