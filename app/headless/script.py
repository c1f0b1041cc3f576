"""Headless conversation scripts: what the simulated user says and when.

A script is JSON: `{"turns": [{"wav": "q.wav", "pause_after": 1.0}, {"text": "And in Kenya?", "voice": "am_adam"},
{"wav": "stop.wav", "barge_in": 1.2}]}` (or just the list). Each turn is a WAV path (relative to the script) or a
text synthesized with a voice other than the agent's. A normal turn starts once the agent has been quiet for the
previous turn's `pause_after` seconds; a `barge_in` turn starts that many seconds into the agent's reply.
`ScriptedInput` is the input source the headless device reads block by block."""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from app.config import Config
from app.errors import InputError
from engines.audio_io import read_audio

if TYPE_CHECKING:
    from app.conversation.session import Session

LEAD_IN_S = 0.5  # silence before the first turn
READY_WAIT_S = 30.0  # the first turn waits this long at most for the session to be ready (its prompt cached)
MAX_WAIT_S = 60.0  # give up waiting for the agent after this long


@dataclass(frozen=True)
class UserTurn:
    audio: np.ndarray  # 16 kHz mono float32
    pause_after_s: float = 1.0
    barge_in_s: float | None = None
    label: str = ""


@dataclass(frozen=True)
class ScriptTurn:
    wav: str = ""
    text: str = ""
    voice: str = ""
    pause_after: float = 1.0
    barge_in: float | None = None


def parse_script(path: Path) -> list[ScriptTurn]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such script") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    items = raw.get("turns") if isinstance(raw, dict) else raw
    if not isinstance(items, list) or not items:
        raise InputError(f"{path}: expected a non-empty list of turns")
    turns = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or bool(item.get("wav")) == bool(item.get("text")):
            raise InputError(f"{path}: turn {i + 1} needs exactly one of \"wav\" or \"text\"")
        unknown = set(item) - {"wav", "text", "voice", "pause_after", "barge_in"}
        if unknown:
            raise InputError(f"{path}: turn {i + 1} has unknown key(s) {', '.join(sorted(unknown))}")
        try:
            turn = ScriptTurn(str(item.get("wav", "")), str(item.get("text", "")), str(item.get("voice", "")),
                              float(item.get("pause_after", 1.0)),
                              None if item.get("barge_in") is None else float(item["barge_in"]))
        except (TypeError, ValueError):
            raise InputError(f"{path}: turn {i + 1}: pause_after and barge_in must be numbers") from None
        if turn.wav and not Path(turn.wav).is_absolute():
            turn = ScriptTurn(str(path.parent / turn.wav), turn.text, turn.voice, turn.pause_after, turn.barge_in)
        turns.append(turn)
    return turns


def load_turns(script: list[ScriptTurn], synthesize: Callable[[str, str], np.ndarray] | None) -> list[UserTurn]:
    """WAVs read (any format, to 16 kHz mono), texts synthesized by `synthesize(text, voice)` (None: the script
    has no text turns)."""
    out = []
    for turn in script:
        if turn.wav:
            audio = read_audio(turn.wav)
        elif synthesize is not None:
            audio = synthesize(turn.text, turn.voice)
        else:
            raise InputError("this script has text turns: they need a voice to speak them")
        out.append(UserTurn(audio, turn.pause_after, turn.barge_in, turn.wav or "text"))
    return out


class ScriptedInput:
    """The simulated user, as an input source: `(start_sample, n) -> samples | None` (None: the session is over)."""

    def __init__(self, turns: list[UserTurn], rate: int, agent_idle: Callable[[], bool],
                 agent_playing_s: Callable[[], float | None], agent_ready: Callable[[], bool] = lambda: True):
        """`agent_ready`: whether the session says it is ready; the first turn waits for it (as a user waits for
        the window's "ready"), at most `READY_WAIT_S`."""
        self.turns, self.rate = turns, rate
        self.agent_idle, self.agent_playing_s, self.agent_ready = agent_idle, agent_playing_s, agent_ready
        self.index = -1  # turn being played; -1 = before the first
        self.pos = 0  # samples of the current turn played
        self.started_at: list[int] = []  # sample index at which each turn started
        self._idle_since: int | None = None
        self._waiting_since = 0
        self.gave_up: list[int] = []  # turns after which the agent never went quiet
        self._force = False

    @classmethod
    def following(cls, turns: list[UserTurn], rate: int, session: Callable[[], Session | None]) -> ScriptedInput:
        """The scripted user of the session `session()` returns (None until it exists): it waits for that session to
        be ready, idle or far enough into its reply."""
        def idle() -> bool:
            current = session()
            return current is not None and current.idle.is_set()

        def playing_s() -> float | None:
            current = session()
            return current.reply_playing_s() if current is not None else None

        def ready() -> bool:
            current = session()
            return current is not None and current.ready.is_set()

        return cls(turns, rate, agent_idle=idle, agent_playing_s=playing_s, agent_ready=ready)

    def _ready(self, now: int) -> bool:
        if self._force:
            self._force = False
            return True
        nxt = self.turns[self.index + 1] if self.index + 1 < len(self.turns) else None
        if self.index == -1:
            return now >= LEAD_IN_S * self.rate and (self.agent_ready() or now >= READY_WAIT_S * self.rate)
        if nxt is not None and nxt.barge_in_s is not None:
            playing = self.agent_playing_s()
            return playing is not None and playing >= nxt.barge_in_s
        idle = self.agent_idle()
        if not idle:
            self._idle_since = None
            return False
        self._idle_since = now if self._idle_since is None else self._idle_since
        return now - self._idle_since >= self.turns[self.index].pause_after_s * self.rate

    def __call__(self, start: int, n: int) -> np.ndarray | None:
        out = np.zeros(n, dtype=np.float32)
        filled = 0
        while filled < n:
            now = start + filled
            if 0 <= self.index < len(self.turns) and self.pos < len(self.turns[self.index].audio):
                clip = self.turns[self.index].audio
                take = min(n - filled, len(clip) - self.pos)
                out[filled:filled + take] = clip[self.pos:self.pos + take]
                self.pos += take
                filled += take
                if self.pos >= len(clip):
                    self._idle_since, self._waiting_since = None, start + filled
                continue
            if self._ready(now):
                if self.index + 1 >= len(self.turns):
                    return None if filled == 0 else out
                self.index, self.pos = self.index + 1, 0
                self.started_at.append(now)
                continue
            if now - self._waiting_since > MAX_WAIT_S * self.rate:
                self.gave_up.append(self.index)
                self._force, self._waiting_since = True, now  # move on
            break
        return out


def user_voice_synthesizer(cfg: Config) -> Callable[[str, str], np.ndarray]:
    """A voice unlike the agent's for scripted text turns: Kokoro, with a voice the agent does not use."""
    from app.engine_factory import build_tts

    tts = build_tts(cfg, "kokoro-82m-int8", voice="am_michael" if cfg.models.voice != "am_michael" else "bm_george")

    def synthesize(text: str, voice: str) -> np.ndarray:
        from engines.audio_io import resample
        from engines.protocols import VoiceChoice

        if voice and isinstance(tts, VoiceChoice):  # a Kokoro voice: always, as asked above
            tts.set_voice(voice)
        chunks = [resample(c.samples, c.sample_rate, 16000) for c in tts.synthesize(text)]
        if not chunks:
            raise InputError(f"script text {text!r} produced no speech")
        return np.concatenate(chunks)

    return synthesize
