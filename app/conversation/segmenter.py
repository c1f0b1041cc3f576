"""Cut streaming LLM text into speakable segments; the first one short, for fast first audio.

Call ``split`` with everything not yet spoken (the previous ``rest`` plus new text):

>>> split("The tallest mountain in Africa, by far, is Kilimanjaro. It is 5,895 m", first=True, final=False)
(['The tallest mountain in Africa,', 'by far, is Kilimanjaro.'], 'It is 5,895 m')
>>> split("Well, it depends. Dr. Smith says 3.5 hours. Then", first=True, final=False)
(['Well, it depends.', 'Dr. Smith says 3.5 hours.'], 'Then')
>>> split("First, you add flour; then", first=False, final=False)
([], 'First, you add flour; then')
>>> split("**Step one:** mix the `flour`", first=False, final=True)
(['Step one: mix the flour'], '')
>>> split("- two eggs\\n- a cup of milk", first=False, final=True)
(['two eggs', 'a cup of milk'], '')

Rules: sentences end at ``. ! ?`` (and a line break) followed by whitespace; the first segment may
also end at a clause mark ``, ; : —`` followed by whitespace. A cut needs the following whitespace, or
for the first segment, the end of the buffer after a letter: "3.5" and "5,895" are never cut, while the first
segment "Ottawa." at the end of a streaming buffer is (the first audio does not wait for the next token). Nothing is
cut after a known abbreviation, a dotted one (U.S.) or a single-letter initial, and no segment shorter than
``min_words`` words is emitted (it waits for the next boundary) unless ``final``. ``max_chars`` (off by
default) cuts an over-long segment at its last space. Markdown the LLM might emit (``* # `` ` ``,
list bullets ``- * + •``) is removed, since a voice would read it aloud.
"""

from __future__ import annotations

import re

ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc approx no fig cf ca inc ltd co mt ft".split()
)
_BULLET = re.compile(r"^[ \t]*(?:[-+*•]|#{1,6})[ \t]+", re.MULTILINE)
_MARKUP = re.compile(r"[*#`]+")
_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*(?=\s)|\n")
_CLAUSE_END = re.compile(r"(?:[,;:]|\s?[—–])(?=\s)")
# the first segment only: a mark ending the buffer right after a letter ("Ottawa." but not "3." or "5,")
_END_OF_BUFFER = re.compile(r"(?<=[^\W\d_])(?:[.!?…]+[\"')\]]*|[,;:])$")
_LAST_WORD = re.compile(r"(\S+)$")
# Words that open a phrase: the first segment may end before one ("Romeo and Juliet | was written by ..."), so the
# voice starts on the subject instead of waiting for the whole sentence; not after a word that needs what follows.
PHRASE_STARTERS = frozenset(
    "is are was were will would can could should because by in on at for with from during after before since until"
    " about into than that which who when where while so but".split()
)
_DANGLING = PHRASE_STARTERS | frozenset("a an the of to and or my your his her its our their not very this".split())
_PHRASE_START = re.compile(r"\s+(?=(" + "|".join(sorted(PHRASE_STARTERS)) + r")\b)", re.IGNORECASE)


def strip_markdown(text: str) -> str:
    """Remove emphasis, heading and code marks, and list bullets (with the space after them).

    Numbered list items keep their number: "1." is read as a word and says which step it is.
    """
    return _MARKUP.sub("", _BULLET.sub("", text))


def _is_abbreviation(text: str, dot_end: int) -> bool:
    """Whether the "." ending at ``dot_end`` closes an abbreviation or an initial (J. F. Kennedy)."""
    if text[dot_end - 1] != ".":
        return False
    match = _LAST_WORD.search(text, 0, dot_end - 1)
    word = match.group(1).lower().lstrip("(\"'") if match else ""
    return word in ABBREVIATIONS or "." in word or (len(word) == 1 and word.isalpha())


def _phrase_cuts(text: str, min_words: int) -> list[tuple[int, bool]]:
    """Cuts before a phrase starter with at least `min_words` words before it, the last of them not dangling."""
    cuts = []
    for m in _PHRASE_START.finditer(text):
        before = text[:m.start()].split()
        if len(before) >= min_words and before[-1].lower().strip("\"'(") not in _DANGLING:
            cuts.append((m.start(), False))
    return cuts


def _boundaries(text: str, clauses: bool, phrase_words: int | None) -> list[tuple[int, bool]]:
    """(index just after a possible cut, whether it ends a sentence), in text order."""
    cuts = [(m.end(), True) for m in _SENTENCE_END.finditer(text) if not _is_abbreviation(text, m.end())]
    if clauses:
        cuts += [(m.end(), False) for m in _CLAUSE_END.finditer(text)]
        end = _END_OF_BUFFER.search(text)
        if end and not _is_abbreviation(text, end.end()):
            cuts.append((end.end(), end.group()[0] not in ",;:"))
        if phrase_words is not None:
            cuts += _phrase_cuts(text, phrase_words)
    return sorted(cuts)


def split(
    buffer: str, first: bool, final: bool, *, min_words: int = 2, max_chars: int | None = None,
    phrase_words: int | None = None,
) -> tuple[list[str], str]:
    """Cut ``buffer`` into complete segments and the ``rest`` still waiting for more text.

    ``first``: no segment of this reply has been emitted yet, so the first one may end at a clause.
    ``final``: the LLM is done; whatever is left becomes the last segment.
    ``phrase_words``: the first segment may also end before a phrase starter (``PHRASE_STARTERS``) once this many
    words precede it (off by default).
    """
    text = strip_markdown(buffer)
    segments: list[str] = []
    start = 0
    for end, ends_sentence in _boundaries(text, clauses=first, phrase_words=phrase_words):
        if end <= start or (not ends_sentence and segments):
            continue
        candidate = text[start:end].strip()
        if len(candidate.split()) < min_words or \
                (not ends_sentence and max_chars is not None and len(candidate) > max_chars):
            continue  # too short; or a clause longer than the bound, which is cut at a space below instead
        segments.append(candidate)
        start = end
    rest = text[start:].lstrip()
    if max_chars is not None:
        while len(rest) > max_chars and " " in rest[1 : max_chars + 1]:
            cut = rest.rindex(" ", 1, max_chars + 1)
            segments.append(rest[:cut].strip())
            rest = rest[cut:].lstrip()
    if final and rest.strip():
        segments.append(rest.strip())
        rest = ""
    return segments, rest
