"""The engines of one conversation, with their optional abilities checked once.

`Engines` holds one engine per role (VAD, Smart Turn, recognizer, language model, voice). When it is made, each
optional ability of `engines/protocols.py` is looked up once and kept as a typed reference (`scorer`: the language
model when it scores the end of an utterance from the text, else None; `stepper`: the recognizer when it decodes in
steps, else None), so the session asks `engines.scorer is not None` instead of probing an engine's attributes."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from engines.protocols import (
    Closable,
    DeviceSynchronized,
    Forkable,
    Generator,
    Recognizer,
    RemoteModel,
    SteppedRecognizer,
    Synthesizer,
    TextTurnScorer,
    TurnDetector,
    Vad,
    VoiceChoice,
)

ROLES = ("vad", "turn", "asr", "llm", "tts")
STATEFUL = ("vad", "asr", "llm")  # hold one conversation's state: another conversation needs a fork


class NotForkable(RuntimeError):
    """An engine holding a conversation's state cannot serve a second conversation at the same time."""
REQUIRED: dict[str, type] = {"vad": Vad, "turn": TurnDetector, "asr": Recognizer, "llm": Generator,
                             "tts": Synthesizer}


@dataclass(frozen=True, slots=True)
class Abilities:
    """What the engines can do beyond their role's protocol (shown by `cadence` and in the logs)."""

    text_turn_score: bool = False  # the LLM scores the end of the user's utterance from the text
    stepped_asr: bool = False  # the recognizer decodes while the user talks
    voices: bool = False  # the voice engine has several voices
    remote_llm: bool = False  # the language model runs on a server (its units wait on the remote lane)
    device_sync: bool = False  # an engine's device work is asynchronous (a GPU): device units end on its sync

    def describe(self) -> str:
        return " ".join(f"{name}={'yes' if getattr(self, name) else 'no'}"
                        for name in ("text_turn_score", "stepped_asr", "voices", "remote_llm", "device_sync"))


@dataclass
class Engines:
    vad: Vad
    turn: TurnDetector
    asr: Recognizer
    llm: Generator
    tts: Synthesizer
    names: dict[str, str] = field(default_factory=dict)
    scorer: TextTurnScorer | None = field(init=False, default=None)
    stepper: SteppedRecognizer | None = field(init=False, default=None)
    abilities: Abilities = field(init=False, default=Abilities())
    asynchronous: tuple[DeviceSynchronized, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        self.scorer = self.llm if isinstance(self.llm, TextTurnScorer) else None
        self.stepper = self.asr if isinstance(self.asr, SteppedRecognizer) else None
        self.asynchronous = tuple(e for e in (self.asr, self.llm, self.tts)
                                  if isinstance(e, DeviceSynchronized) and e.asynchronous)
        self.abilities = Abilities(text_turn_score=self.scorer is not None, stepped_asr=self.stepper is not None,
                                   voices=isinstance(self.tts, VoiceChoice),
                                   remote_llm=isinstance(self.llm, RemoteModel),
                                   device_sync=bool(self.asynchronous))

    def fork(self) -> Engines:
        """The engines of another conversation at the same time, on the same weights: each stateful engine forked
        (NotForkable when one cannot be), the voice forked when it can be (its own voice choice), the rest shared."""
        twins = {}
        for role in ROLES:
            engine = getattr(self, role)
            if isinstance(engine, Forkable):
                twins[role] = engine.fork()
            elif role in STATEFUL:
                Engines.close_forks(twins, self)
                raise NotForkable(f"the {role} engine ({self.names.get(role, type(engine).__name__)}) serves one "
                                  "conversation at a time")
            else:
                twins[role] = engine
        return Engines(**twins, names=dict(self.names))

    @staticmethod
    def close_forks(forked: Engines | dict[str, object], of: Engines) -> None:
        """Free what `of.fork()` made for `forked` (an LLM fork's context); the shared engines stay."""
        for role in ROLES:
            engine = forked.get(role) if isinstance(forked, dict) else getattr(forked, role)
            if engine is not None and engine is not getattr(of, role) and isinstance(engine, Closable):
                engine.close()

    def device_barrier(self) -> Callable[[], None] | None:
        """What the scheduler calls at the end of each device-lane unit: wait for every asynchronous engine's
        device work (None when all run synchronously, on the CPU)."""
        engines = self.asynchronous
        if not engines:
            return None

        def barrier() -> None:
            for engine in engines:
                engine.synchronize()
        return barrier

    def missing_roles(self) -> list[str]:
        """Roles whose engine does not implement its protocol (empty for any engine the factory builds)."""
        return [role for role in ROLES if not isinstance(getattr(self, role), REQUIRED[role])]
