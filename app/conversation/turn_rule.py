"""The end-of-turn fusion rule, pure: how long after the pause to reply, from Smart Turn's probability and the text
score (log10 P(the user's message ends here)), and the settings it reads (`TurnSettings`).

The core (`state.end_of_turn`) applies it once both signals are in; `cadence bench turns` compares variants of it on
labelled pauses (`eot_wait`). The table of measured variants is in docs/turn-taking.md."""
from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class TurnSettings:
    """Timings in seconds. See docs/turn-taking.md for how they combine."""

    pause_s: float = 0.2  # the VAD reports SpeechStopped this long after speech ended
    max_wait_s: float = 2.0  # after SpeechStopped, reply anyway (with a non-empty transcript)
    uncertain_wait_s: float = 1.2  # after SpeechStopped, reply when one signal leans "complete", the other is unsure
    disagree_wait_s: float = 1.5  # after SpeechStopped, reply when audio and text disagree
    min_barge_in_s: float = 0.3  # speech during a reply must last this long to interrupt; 0: at once
    turn_threshold: float = 0.5  # Smart Turn P(complete) at or above this: audio says complete
    turn_sure_threshold: float = 0.9  # ... at or above this: surely complete, a merely likely text suffices (a
    # hesitation heard as a question, "What is that?" for "What is the, …", reads 0.65-0.88; questions 0.95-0.99)
    text_complete_log10: float = -1.2  # text score at or above: text says complete
    text_fragment_log10: float = -3.0  # text score at or below: text says fragment; between: unsure
    text_sure_log10: float = -0.2  # text score at or above: sure enough to answer over the audio's "not yet" ...
    sure_wait_s: float = 0.3  # ... after this long (`cadence bench turns`: no added takeover; docs/turn-taking.md)
    text_score_wait_s: float | None = 1.0  # after TranscriptFinal, wait this long for a text score (it comes from
    # the reply's own prefill, which the first audio waits for anyway)
    # (None: expect no text score; the session may also send EndOfUtteranceScore(score=None))

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float | int) and f.name.endswith("_s") and value < 0:
                raise TurnSettingsError(f.name, f"must be >= 0, got {value}")
        for name in ("turn_threshold", "turn_sure_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise TurnSettingsError(name, f"must be in [0, 1], got {getattr(self, name)}")
        if self.text_fragment_log10 > self.text_complete_log10:
            raise TurnSettingsError("text_fragment_log10", "must be <= text_complete_log10")
        if not self.uncertain_wait_s <= self.disagree_wait_s <= self.max_wait_s:
            raise TurnSettingsError("max_wait_s", "need uncertain_wait_s <= disagree_wait_s <= max_wait_s, got "
                                    f"{self.uncertain_wait_s} / {self.disagree_wait_s} / {self.max_wait_s}")

    @classmethod
    def scaled(cls, max_wait_s: float, **values: float) -> TurnSettings:
        """Settings whose shorter waits (uncertain 1.2 s, disagree 1.5 s) never exceed ``max_wait_s``: a user who
        wants every reply within 0.5 s gets 0.5 s for each."""
        default = cls()
        return cls(max_wait_s=max_wait_s, uncertain_wait_s=min(default.uncertain_wait_s, max_wait_s),
                   disagree_wait_s=min(default.disagree_wait_s, max_wait_s),
                   sure_wait_s=min(default.sure_wait_s, max_wait_s),
                   text_score_wait_s=min(default.text_score_wait_s or max_wait_s, max_wait_s), **values)


class TurnSettingsError(ValueError):
    """An invalid turn-taking setting; ``field`` names it (the config maps it to its key)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def text_opinion(score: float | None, settings: TurnSettings) -> bool | None:
    """True: the text reads complete; False: a fragment; None: no score or in between."""
    if score is None:
        return None
    if score >= settings.text_complete_log10:
        return True
    if score <= settings.text_fragment_log10:
        return False
    return None


def text_decides(cfg: TurnSettings, text_log10: float | None) -> bool:
    """Whether the text alone settles the end of the turn: words this surely complete are answered `sure_wait_s`
    after the pause whatever the voice says (Smart Turn could only make it sooner), so its verdict need not come
    first (`state.end_of_turn`; on a CPU-only machine the session runs it after the reply's first audio).

    >>> text_decides(TurnSettings(), -0.05), text_decides(TurnSettings(), -0.6), text_decides(TurnSettings(), None)
    (True, False, False)
    """
    return text_log10 is not None and text_log10 >= cfg.text_sure_log10


def sure_wait(cfg: TurnSettings) -> float:
    """Seconds after SpeechStopped at which a surely complete text is answered (`text_sure`)."""
    return min(cfg.sure_wait_s, cfg.disagree_wait_s)


def eot_wait(cfg: TurnSettings, audio_p: float, text_log10: float | None) -> float:
    """Seconds after SpeechStopped at which the rule replies, once Smart Turn's probability and the text score
    (None: none) are known (`cadence bench turns` compares rules with it)."""
    return decide(cfg, audio_p, text_log10)[0]


def decide(cfg: TurnSettings, audio_p: float, text_log10: float | None) -> tuple[float, str]:
    """(seconds after SpeechStopped, reason) for these signals.

    >>> decide(TurnSettings(), 0.95, -0.5)  # both say complete, the audio surely
    (0.0, 'complete')
    >>> decide(TurnSettings(), 0.7, -0.6)  # "What is that?" for "What is the, …": the voice only leans
    (1.2, 'uncertain_wait')
    >>> decide(TurnSettings(), 0.04, -0.01)  # a flat voice, words surely complete
    (0.3, 'text_sure')
    """
    audio = audio_p >= cfg.turn_threshold
    if text_log10 is None:  # no text signal: the audio verdict alone decides
        return (0.0, "complete") if audio else (cfg.max_wait_s, "max_wait")
    text = text_opinion(text_log10, cfg)
    if text is True and audio_p >= max(cfg.turn_sure_threshold, cfg.turn_threshold):
        return 0.0, "complete"
    if text_decides(cfg, text_log10):  # words this surely complete outweigh a voice that does not sound done
        return sure_wait(cfg), "text_sure"
    if audio and text is not False:  # one signal leans "complete", the other is not sure
        return cfg.uncertain_wait_s, "uncertain_wait"
    if text is not None and text != audio:
        return cfg.disagree_wait_s, "disagree_wait"
    return cfg.max_wait_s, "max_wait"
