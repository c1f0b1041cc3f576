"""A guard against repetition loops in greedy decoding, pure: the tokens that would repeat an n-gram of the reply
too often. Small models decoding greedily fall into loops ("a hat, a scarf, a hat, a hat, a hat, ..."); banning
the token that would make a `size`-token sequence occur more than `allowed` times breaks the loop at its first
turn, and leaves ordinary answers (whose longer n-grams hardly ever repeat) as greedy decoding wrote them.

>>> banned_next([5, 6, 7, 5, 6, 7, 5, 6], size=3, allowed=2)
{7}
>>> banned_next([5, 6, 7, 5, 6, 7, 5, 6], size=3, allowed=3)
set()
>>> banned_next([1, 2, 3], size=4)
set()
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

NGRAM = 4  # tokens: a 4-token sequence may occur twice in a reply, not three times
ALLOWED = 2
MAX_BANS = 3  # a reply that keeps running into the guard is over (it has nothing new to say)


def banned_next(tokens: Sequence[int], size: int = NGRAM, allowed: int = ALLOWED) -> set[int]:
    """Tokens that, appended to `tokens`, would make a `size`-gram occur more than `allowed` times."""
    if size < 2 or len(tokens) < size - 1:
        return set()
    prefix = list(tokens[len(tokens) - (size - 1):])
    follows: Counter[int] = Counter()
    for i in range(len(tokens) - size + 1):
        if list(tokens[i:i + size - 1]) == prefix:
            follows[tokens[i + size - 1]] += 1
    return {token for token, count in follows.items() if count >= allowed}
