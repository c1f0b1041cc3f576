"""The tests' word error rate is the product's (app/metrics/wer.py): one normalisation everywhere. `clip_limit`
is the bound for a single short clip."""
from app.metrics.wer import corpus_wer, edit_distance, normalise, wer  # noqa: F401


def clip_limit(reference: str, rate: float, words: int = 2) -> float:
    """The WER limit for one short clip: `rate`, but never fewer than `words` words of the reference.

    Whisper's output differs by a word here and there between CPU vendors (its int8 kernels round differently on
    Intel Xeon and AMD EPYC: on AMD the 48 kHz copy of "She had your dark suit in greasy wash water all year" came
    back with "and" for "in" as well as "dog" for "dark"), and one word of a 4- to 11-word clip is 9-25 % WER: a
    limit that one word breaks tests the CPU, not the code. A single clip's bound says the words are there; quality
    is held tight where many clips are pooled (`corpus_wer`).

    >>> clip_limit("go forward ten meters", 0.2)
    0.5
    >>> clip_limit("and so my fellow americans ask not what your country can do for you", 0.15)
    0.15
    """
    return max(rate, words / max(1, len(normalise(reference).split())))
