"""What a person would say for a segment of written LLM text: markdown, lists, LaTeX, links, emoji, symbols, units
and numbers become words, pure. Applied to each segment just before it is spoken (it takes microseconds, so first
audio does not wait), and the spoken form is what the transcript and the history keep.

>>> speakable("**Step 1:** mix \\\\(3 \\\\times 60\\\\) grams")
'Step one: mix three times sixty grams'
>>> speakable("It's 25°C, 40% humidity and winds of 15 km/h.")
"It's twenty-five degrees Celsius, forty percent humidity and winds of fifteen kilometers per hour."
>>> speakable("A ticket costs $5.99, e.g. at https://www.example.com/tickets.")
'A ticket costs five dollars and ninety-nine cents, for example at example dot com.'
>>> speakable("1. Stand up straight.")
'First, stand up straight.'
>>> speakable("Mount Kilimanjaro is 5,895 m tall 🏔️, about 19,341 ft.")[:80]
'Mount Kilimanjaro is five thousand eight hundred and ninety-five meters tall, ab'
>>> speakable("In 1969, 1/2 of 10 = 5 & 2^3 = 8.")
'In nineteen sixty-nine, one half of ten equals five and two cubed equals eight.'
>>> speakable("The 21st century; x² + 1 ≈ 3 × 10^8 m/s")
'The twenty-first century; x squared plus one is about three times ten to the power of eight meters per second'
>>> unreadable("It's 3 * 4 = 12 \\\\(x\\\\) #1 [link](u) 😀"), unreadable("Twelve, that's it!")
(['*', '=', '\\\\', '\\\\', '#', '[', ']', '😀'], [])
"""
from __future__ import annotations

import re
import unicodedata

from num2words import num2words

_LATEX_COMMANDS = {
    r"\times": " times ", r"\cdot": " times ", r"\div": " divided by ", r"\pm": " plus or minus ",
    r"\approx": " is about ", r"\leq": " is at most ", r"\le": " is at most ", r"\geq": " is at least ",
    r"\ge": " is at least ", r"\neq": " is not ", r"\ne": " is not ", r"\pi": " pi ", r"\infty": " infinity ",
    r"\%": "%", r"\$": "$", r"\left": "", r"\right": "", r"\,": " ", r"\;": " ", r"\quad": " ",
}
_SYMBOLS = {"×": " times ", "÷": " divided by ", "≈": " is about ", "≤": " is at most ", "≥": " is at least ",
            "≠": " is not ", "±": " plus or minus ", "→": " to ", "–": " to ", "&": " and ", "²": " squared",
            "³": " cubed", "½": " one half", "¼": " one quarter", "¾": " three quarters", "π": " pi ",
            "…": "...", "—": ",", "’": "'", "‘": "'", "“": '"', "”": '"'}
_UNITS = {"km/h": "kilometers per hour", "kph": "kilometers per hour", "mph": "miles per hour",
          "m/s": "meters per second", "km²": "square kilometers", "m²": "square meters", "km": "kilometers",
          "cm": "centimeters", "mm": "millimeters", "kg": "kilograms", "mg": "milligrams", "g": "grams",
          "lbs": "pounds", "lb": "pounds", "oz": "ounces", "ft": "feet", "mi": "miles", "ml": "milliliters",
          "mL": "milliliters", "l": "liters", "L": "liters", "m": "meters", "kWh": "kilowatt hours",
          "kW": "kilowatts", "W": "watts", "GB": "gigabytes", "MB": "megabytes", "Hz": "hertz", "s": "seconds",
          "min": "minutes", "h": "hours", "hrs": "hours", "yd": "yards"}
_ABBREVIATIONS = {"e.g.": "for example", "i.e.": "that is", "etc.": "et cetera", "vs.": "versus",
                  "approx.": "approximately", "Mt.": "Mount", "Dr.": "Doctor", "St.": "Saint"}
_FRACTIONS = {"1/2": "one half", "1/3": "one third", "2/3": "two thirds", "1/4": "one quarter",
              "3/4": "three quarters", "1/10": "one tenth"}
_ORDINAL_WORDS = ["First", "Second", "Third", "Fourth", "Fifth", "Sixth", "Seventh", "Eighth", "Ninth", "Tenth"]
NUMBER = r"\d+(?:,\d{3})*(?:\.\d+)?"
_READABLE = set(" \t\n.,;:!?'\"()-")


def _words(number: str, year: bool = False) -> str:
    """'5,895' -> 'five thousand eight hundred and ninety-five'; with `year`, 1969 -> 'nineteen sixty-nine'."""
    value = number.replace(",", "")
    if year and value.isdigit() and 1100 <= int(value) <= 2099 and "," not in number:
        return num2words(int(value), to="year")
    words = num2words(float(value) if "." in value else int(value))
    return words.replace(",", "")


def _latex(text: str) -> str:
    text = re.sub(r"\\\(|\\\)|\\\[|\\\]|\$\$", " ", text)
    text = re.sub(r"\$([^$\d][^$]*)\$", r" \1 ", text)  # inline $x^2$ (a dollar amount starts with a digit)
    text = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r" \1 over \2 ", text)
    text = re.sub(r"\\sqrt\{([^{}]*)\}", r" the square root of \1 ", text)
    text = re.sub(r"\\(?:text|mathrm|mathbf|operatorname)\{([^{}]*)\}", r"\1", text)
    for command, said in sorted(_LATEX_COMMANDS.items(), key=lambda kv: -len(kv[0])):
        text = re.sub(re.escape(command) + r"(?![a-zA-Z])", lambda _m, said=said: said, text)
    return text


def _markdown(text: str) -> str:
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # [text](url): the text
    text = re.sub(r"^[ \t]*(?:[-+*•]|#{1,6})[ \t]+", "", text, flags=re.MULTILINE)
    text = re.sub(r"\*(?=\S)([^*\n]+?)(?<=\S)\*", r"\1", text.replace("**", ""))  # *emphasis*; "a * b" stays
    text = re.sub(r"(__|`+|~~)", "", text)
    return re.sub(r"^[ \t]*(\d{1,2})[.)][ \t]+(\w)",
                  lambda m: _list_item(int(m[1]), m[2]), text, flags=re.MULTILINE)


def _list_item(n: int, first_letter: str) -> str:
    said = _ORDINAL_WORDS[n - 1] if 1 <= n <= len(_ORDINAL_WORDS) else f"Number {_words(str(n))}"
    return f"{said}, {first_letter.lower()}"


def _links(text: str) -> str:
    def host(match: re.Match[str]) -> str:
        name = re.sub(r"^(?:https?://)?(?:www\.)?", "", match[0]).split("/")[0].rstrip(".,;:!?")
        return name.replace(".", " dot ")

    text = re.sub(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+",
                  lambda m: m[0].replace("@", " at ").replace(".", " dot "), text)
    return re.sub(r"(?:https?://|www\.)[^\s)]+?(?=[.,;:!?]?(?:\s|$))", host, text)


def _money_and_units(text: str) -> str:
    def money(match: re.Match[str]) -> str:
        symbol, amount, scale = match[1], match[2], match[3] or ""
        unit = {"$": "dollars", "€": "euros", "£": "pounds"}[symbol]
        whole, _, cents = amount.replace(",", "").partition(".")
        if scale:
            return f"{_words(amount)} {scale} {unit}"
        said = f"{_words(whole)} {unit[:-1] if whole == '1' else unit}"
        if cents and int(cents):
            said += f" and {_words(cents)} {'cent' if int(cents) == 1 else 'cents'}"
        return said

    text = re.sub(rf"([$€£])\s?({NUMBER})(?:\s?(million|billion|thousand)\b)?", money, text)
    text = re.sub(rf"({NUMBER})\s?°\s?([CF])\b",
                  lambda m: f"{m[1]} degrees {'Celsius' if m[2] == 'C' else 'Fahrenheit'}", text)
    text = re.sub(r"\s?°\s?([CF])\b", lambda m: f" degrees {'Celsius' if m[1] == 'C' else 'Fahrenheit'}", text)
    text = re.sub(r"\s?°", " degrees", text)
    text = re.sub(rf"({NUMBER})\s?%", r"\1 percent", text)
    units = "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
    return re.sub(rf"({NUMBER})\s?({units})(?![\w/²])", lambda m: f"{m[1]} {_UNITS[m[2]]}", text)


def _math(text: str) -> str:
    for fraction, said in _FRACTIONS.items():
        text = re.sub(rf"(?<![\d/]){re.escape(fraction)}(?![\d/])", said, text)
    text = text.replace("²", "^2").replace("³", "^3")
    text = re.sub(r"\s*×\s*|(?<=\S)\s\*\s(?=\S)", " times ", text)  # (Celsius × 9/5), a * b
    operand = rf"(?:{NUMBER}|[a-zA-Z]\b|\))"
    for pattern, said in ((r"\*|x(?=\s)", "times"), (r"/", "divided by"), (r"\+", "plus"),
                          (r"-|−", "minus"), (r"=", "equals"), (r"<", "is less than"), (r">", "is more than")):
        text = re.sub(rf"({operand})\s+(?:{pattern})\s+(?={operand}|\()", rf"\1 {said} ", text)
        if pattern not in (r"-|−", r"x(?=\s)", r"\*|x(?=\s)"):
            text = re.sub(rf"(?<=\d)\s*(?:{pattern})\s*(?=\d)", f" {said} ", text)
    text = re.sub(r"(?<=\d)\s*\*\s*(?=\d)", " times ", text)
    text = re.sub(rf"(?<=[\w)])\s*\^\s*\{{?({NUMBER}|\w)\}}?",
                  lambda m: " squared" if m[1] == "2" else " cubed" if m[1] == "3" else f" to the power of {m[1]}",
                  text)
    text = re.sub(r"(?<=\d)\s?[-–]\s?(?=\d)", " to ", text)  # a range: 3-4 minutes
    text = re.sub(r"(?<![\w)])[-−](?=\d)", "minus ", text)  # a negative number
    text = re.sub(r"\+(?=\d)", " plus ", text)
    text = re.sub(r"\b(\d{1,2}):(\d{2})\b", lambda m: f"{m[1]} {m[2]}" if m[2] != "00" else f"{m[1]} o'clock", text)
    text = re.sub(r"(?<=\d):(?=\d)", " to ", text)  # a ratio: 16:9
    text = re.sub(r"\s\+\s", " plus ", text)  # between words, as LaTeX leaves them: "a quarter + the root of"
    text = re.sub(r"\s=\s", " equals ", text)
    text = re.sub(r"~\s*(?=\d)", "about ", text)
    return re.sub(r"#\s*(?=\d)", "number ", text)


def _numbers(text: str) -> str:
    text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: num2words(int(m[1]), to="ordinal"), text)
    return re.sub(rf"(?<![\w.]){NUMBER}(?![\w])",
                  lambda m: _words(m[0].rstrip("."), year=True) + ("." if m[0].endswith(".") else ""), text)


def _symbols(text: str) -> str:
    for symbol, said in _SYMBOLS.items():
        text = text.replace(symbol, said)
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category in ("So", "Sk", "Cs", "Co") or char in "\ufe0f\u200d":  # emoji and their joiners
            continue
        kept.append(char)
    text = "".join(kept)
    return re.sub(r"[*_#`|<>{}\[\]\\^~=@]", " ", text)


def speakable(text: str) -> str:
    """`text` as a person would say it (see the module's examples)."""
    text = _latex(text)
    text = _markdown(text)
    text = _links(text)
    for abbreviation, said in _ABBREVIATIONS.items():
        text = re.sub(rf"(?<!\w){re.escape(abbreviation)}", said, text)
    text = _money_and_units(text)
    text = _math(text)
    text = _symbols(text)
    text = _numbers(text)
    text = re.sub(r"[ \t]+([.,;:!?])", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def unreadable(text: str) -> list[str]:
    """The characters in `text` a voice would read out as symbols, or stumble on (letters and digits are fine)."""
    return [c for c in text if not (c.isalnum() or c in _READABLE or unicodedata.category(c).startswith("L"))]
