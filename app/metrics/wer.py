"""Word error rate with one text normalisation for references and hypotheses alike (ASR and TTS round-trip
tests share it): lower case, speaker tags (`spk1:`) and `|` removed, punctuation removed, hyphens split words,
apostrophes dropped, a few abbreviations spelled out, and numbers written as words. Numbers: 0-99 (and round
hundreds/thousands) become cardinal words ("10" -> "ten"); longer digit strings are read digit by digit
("90210" -> "nine zero two one zero"), and the spoken "oh" of a digit string counts as "zero"."""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = ["normalise", "wer", "corpus_wer", "edit_distance"]

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
        "seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_DIGIT_WORDS = set(_ONES[:10]) | {"oh"}
_ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint", "vs": "versus", "ok": "okay"}


def _cardinal(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    if n < 1000 and n % 100 == 0:
        return _ONES[n // 100] + " hundred"
    if n < 100_000 and n % 1000 == 0:
        return _cardinal(n // 1000) + " thousand"
    raise ValueError(n)


def _number_words(digits: str) -> str:
    """'10' -> 'ten', '300' -> 'three hundred', '90210' -> 'nine zero two one zero'."""
    if not digits.startswith("0") or digits == "0":
        try:
            return _cardinal(int(digits))
        except ValueError:
            pass
    return " ".join(_ONES[int(d)] for d in digits)


def normalise(text: str) -> str:
    """The comparable form of a transcript: lower-case words separated by single spaces.

    Digits and number words normalise the same way, hyphenated or spelled digit by digit included:
    >>> spoken = normalise("one zero zero zero one nine oh two one oh")
    >>> spoken
    'one zero zero zero one nine zero two one zero'
    >>> normalise("1-0-0-0-1, 9-0-2-1-0.") == normalise("10001 90210") == normalise("10001-90210") == spoken
    True
    >>> normalise("Go forward 10 meters."), normalise("twenty-one"), normalise("10,000 vs. 2.5")
    ('go forward ten meters', 'twenty one', 'ten thousand versus two point five')
    >>> normalise("Oh, it's 0-1-8-0-3."), normalise("spk1: Mr. Quilter | spk2: 300")
    ('oh its zero one eight zero three', 'mister quilter three hundred')
    """
    t = text.lower()
    t = re.sub(r"\bspk\d+\s*:", " ", t).replace("|", " ")
    t = re.sub(r"(?<=\d)[,.](?=\d{3}\b)", "", t)  # 10,000 -> 10000
    t = re.sub(r"(?<=\d)\.(?=\d)", " point ", t)
    t = re.sub(r"(\d+)(st|nd|rd|th)\b", r"\1", t)  # ordinals are rare in the fixtures: keep the number
    t = re.sub(r"[’'`]", "", t)
    t = re.sub(r"[^a-z0-9]+", " ", t)  # punctuation, hyphens, symbols
    t = re.sub(r"\d+", lambda m: f" {_number_words(m.group())} ", t)
    words = [_ABBREVIATIONS.get(w, w) for w in t.split()]
    return " ".join(_zero_in_digit_runs(words))


def _zero_in_digit_runs(words: list[str]) -> list[str]:
    """'oh' read as a digit (next to other digit words) becomes 'zero'; an interjection 'oh' stays."""
    out = list(words)
    for i, w in enumerate(words):
        if w == "oh":
            near = words[max(0, i - 1):i] + words[i + 1:i + 2]
            if any(n in _DIGIT_WORDS and n != "oh" for n in near):
                out[i] = "zero"
    return out


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Levenshtein distance between two word sequences (substitutions, insertions, deletions cost 1)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of one hypothesis after normalising both texts (1.0 for an empty hypothesis)."""
    ref, hyp = normalise(reference).split(), normalise(hypothesis).split()
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)


def corpus_wer(pairs: Iterable[tuple[str, str]]) -> float:
    """Total edits over total reference words for (reference, hypothesis) pairs."""
    errors = words = 0
    for reference, hypothesis in pairs:
        ref, hyp = normalise(reference).split(), normalise(hypothesis).split()
        errors += edit_distance(ref, hyp)
        words += len(ref)
    return errors / max(words, 1)
