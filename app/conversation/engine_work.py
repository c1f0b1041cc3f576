"""The session's engine calls, each one bounded scheduler unit, with its result posted back to the session's inbox.

VAD and Smart Turn run on the CPU lane; the recognizer, the language model and the voice on the device lane. Every
LLM call (the warm-up, the speculative prefill, the reply's chunks) runs in a device-lane unit:
the model is not thread-safe, and a later `start()` supersedes an earlier one in queue order. Results come back as
inbox items (`VadJudged`, the core's events); a unit that fails posts `EngineFailed` with the exception's type only
(a message may quote the conversation). Optional abilities are read from `Engines` (checked once when it was made):
the text end-of-utterance score from `engines.scorer`, stepped decoding from `engines.stepper`."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import cast

import numpy as np

from app.conversation import events as e
from app.conversation.inbox import PauseText, Scored, SessionInput, VadJudged
from app.stages import Label, Stage
from engines.engine_set import Engines
from engines.protocols import EngineUnavailable, Generation, Message, ScoredGeneration, SlicedPrefill
from scheduler import (
    CPU_LANE,
    DEVICE_LANE,
    NO_TURN,
    REMOTE_LANE,
    CancelToken,
    Priority,
    Scheduler,
    UnitHandle,
    UnitResult,
    UnitState,
    WorkUnit,
)

log = logging.getLogger("cadence.session")
Post = Callable[[SessionInput], None]
Messages = Callable[[str], list[Message]]


class Feed(Enum):
    """What an ASR unit does after handing the recognizer its new audio."""

    MORE = "more"  # nothing more, or one bounded decode step when a stepped recognizer wants one
    PAUSE = "pause"  # the onset of a pause: decode what there is and warm the LLM's cache with that text
    FINISH = "finish"  # the end of the turn: the final transcript


_FEED_LABELS = {Feed.MORE: Label.ASR_FEED, Feed.PAUSE: Label.ASR_PAUSE, Feed.FINISH: Label.ASR_FINISH}


@dataclass(eq=False)
class Speculation:
    """The reply prepared before the end of the turn is confirmed: its generation is created on the device lane,
    and its prefill reads the text end-of-utterance score."""

    turn_id: int
    text: str
    number: int  # tells this turn's speculations apart in spans
    started_at: float
    generation: Generation | None = None
    score: float | None = None
    scored: bool = False
    prefill: UnitHandle | None = None

    def ready(self) -> Generation:
        if self.generation is None:
            raise RuntimeError("the speculative prefill did not run")
        return self.generation


@dataclass(eq=False)
class Warming:
    """A cache warm-up that may go on in several units: `cancel()` stops whichever runs or waits now, and any
    later one starts nothing (a unit queued as it was cancelled finds `stopped`)."""

    handle: UnitHandle | None = None
    stopped: bool = False

    def cancel(self, scheduler: Scheduler) -> None:
        self.stopped = True
        if self.handle is not None:
            scheduler.cancel_unit(self.handle)


class EngineWork:
    def __init__(self, engines: Engines, scheduler: Scheduler, post: Post, messages: Messages,
                 max_reply_tokens: int, turn_threshold: float):
        self.engines, self.scheduler, self.post, self.messages = engines, scheduler, post, messages
        self.max_reply_tokens, self.turn_threshold = max_reply_tokens, turn_threshold
        # the language model's units: on the device, or waiting on a server without holding the device
        self.llm_lane = REMOTE_LANE if engines.abilities.remote_llm else DEVICE_LANE
        # Smart Turn: beside a GPU, on the CPU lane; where the device lane is the CPU's cores (no engine computes on
        # a GPU), its own thread beside the device lane's would slow both (llama.cpp's threads wait for each other
        # at every layer), so it takes its turn on the device lane (docs/scheduler.md)
        self.turn_lane = CPU_LANE if engines.abilities.device_sync else DEVICE_LANE
        # A pause-onset decode is queued, running, or its text is on its way to start a speculation: a cache
        # warm-up now would only delay that speculation's prefill (it starts from wherever the cache is).
        self._pause_decode_waiting = False

    @staticmethod
    def failure_reason(exc: BaseException | None) -> str:
        """What a failed unit's turn says about it: an engine's own one-line reason when it gave one (a server
        down), else the error's type (a message may hold what the user said)."""
        return str(exc) if isinstance(exc, EngineUnavailable) else type(exc).__name__

    def submit(self, turn: int, stage: Stage, priority: int, fn: Callable[[CancelToken], object],
               on_done: Callable[[UnitHandle], None] | None = None, lane: str = DEVICE_LANE,
               label: str = "", meta: dict | None = None) -> UnitHandle:
        """A unit whose failure ends the turn (`EngineFailed`); `on_done` sees only units that finished."""
        def guarded(handle: UnitHandle) -> None:
            if handle.state is UnitState.FAILED:
                self.post(e.EngineFailed(self.scheduler.clock(), turn, stage, self.failure_reason(handle.exception())))
            elif on_done is not None and handle.state is UnitState.DONE:
                on_done(handle)

        return self.scheduler.submit(WorkUnit(fn, stage, turn, priority, lane=lane, label=label or stage,
                                              meta=meta or {}), on_done=guarded)

    # ---- the CPU lane (and Smart Turn) ----------------------------------------------------------------------
    def judge(self, frame: np.ndarray, index: int, t_start: float, t_end: float) -> None:
        """The VAD on one microphone block; its verdict (or its failure) comes back as `VadJudged`, with the
        block's level."""
        vad, level_db = self.engines.vad, block_level_db(frame)

        def done(handle: UnitHandle) -> None:
            match handle.state:
                case UnitState.DONE:
                    self.post(VadJudged(index, t_start, t_end, float(handle.result()), level_db=level_db))
                case UnitState.FAILED:  # the session logs it and counts the block as judged
                    self.post(VadJudged(index, t_start, t_end, None, type(handle.exception()).__name__))
                case _:  # dropped as the scheduler closes
                    pass

        self.scheduler.submit(WorkUnit(lambda tok: vad.probability(frame), Stage.VAD, NO_TURN, Priority.URGENT,
                                       lane=CPU_LANE), on_done=done)

    @property
    def turn_beside_llm(self) -> bool:
        """Smart Turn and the language model take turns on one lane (a CPU-only machine, the model in-process)."""
        return self.turn_lane == self.llm_lane

    def detect_turn(self, turn: int, audio: np.ndarray) -> None:
        """Smart Turn over the turn's audio; its verdict comes back as `TurnVerdict`."""
        detector, threshold = self.engines.turn, self.turn_threshold

        def done(handle: UnitHandle) -> None:
            p = float(handle.result())
            self.post(e.TurnVerdict(self.scheduler.clock(), turn, p >= threshold, p))

        self.submit(turn, Stage.TURN, Priority.TURN, lambda tok: detector.probability_complete(audio), on_done=done,
                    lane=self.turn_lane)

    # ---- the recognizer ----------------------------------------------------------------------------------------
    def start_asr(self, turn: int) -> None:
        asr = self.engines.asr
        self._pause_decode_waiting = False
        self.submit(turn, Stage.ASR, Priority.ASR, lambda tok: asr.start(), label=Label.ASR_START)

    def feed_asr(self, turn: int, chunks: Sequence[np.ndarray], feed: Feed) -> None:
        """Hand the buffered speech to the recognizer in one device-lane unit. At the onset of a pause it also
        decodes what it has (so `finish()` has little left) and posts that text (`PauseText`): the session may
        start the reply's speculation on it."""
        asr, stepper = self.engines.asr, self.engines.stepper

        def run(tok: CancelToken) -> UnitResult | None:
            if feed is not Feed.PAUSE:  # speech again (or the end): no speculation is about to start
                self._pause_decode_waiting = False
            return decode()

        def decode() -> UnitResult | None:
            for chunk in chunks:
                asr.accept(chunk)
            match feed:
                case Feed.FINISH:
                    return UnitResult(asr.finish(), {"final": True})
                case Feed.PAUSE:
                    if stepper is not None:
                        stepper.step()
                    return UnitResult(asr.partial(), {"at_pause": True})
                case Feed.MORE:
                    if stepper is not None and stepper.wants_step() and stepper.step():
                        return UnitResult(asr.partial(), {"partial": True})
                    return None

        def done(handle: UnitHandle) -> None:
            text = handle.result()
            if feed is Feed.FINISH:
                self.post(e.TranscriptFinal(self.scheduler.clock(), turn, text))
            elif text:
                self.post(PauseText(turn, text, at_pause=feed is Feed.PAUSE))

        if feed is Feed.PAUSE:
            self._pause_decode_waiting = True
        self.submit(turn, Stage.ASR, Priority.ASR, run, on_done=done, label=_FEED_LABELS[feed])

    # ---- the language model ------------------------------------------------------------------------------------
    def warm_up(self, warmed: threading.Event) -> None:
        """Evaluate the system prompt once, so the first turn's prompt finds it in the LLM's cache; `warmed` is set
        when that is over, however it ended."""
        llm, scorer, messages = self.engines.llm, self.engines.scorer, self.messages("Hello")
        started: list[Generation] = []

        def run(tok: CancelToken) -> object:
            try:
                return warm(tok)
            except BaseException:  # failed or cancelled: nothing more will warm it
                warmed.set()
                raise

        def warm(tok: CancelToken) -> object:
            if not started:
                started.append((scorer or llm).start(messages, 1))
            if not _prefill_slices(started[0], tok, WARM_UP_SLICE_TOKENS):
                return LATER
            try:
                if scorer is not None:
                    cast(ScoredGeneration, started[0]).eou_score()  # evaluates everything up to the user's text
                else:
                    started[0].prefill()
            except RuntimeError:  # a turn's prompt superseded it (or a server is not up yet): nothing to warm
                pass
            started[0].cancel()  # nothing is generated from it (a server's stream is closed)
            return None

        def done(handle: UnitHandle) -> None:
            if handle.result() is not LATER:
                warmed.set()
                return
            self.submit(NO_TURN, Stage.LLM, Priority.BACKGROUND, run, on_done=done, label=Label.WARM_UP,
                        lane=self.llm_lane)

        self.submit(NO_TURN, Stage.LLM, Priority.BACKGROUND, run, on_done=done, label=Label.WARM_UP, lane=self.llm_lane)

    def warm(self, turn: int, text: str) -> Warming:
        """While the user speaks: evaluate the prompt up to their words so far, in slices, at background priority,
        stopping at the first sign of more urgent work (nothing to continue: the next words or the speculation go
        on from the cache). The caller cancels it before a speculation starts (a later `start()` would supersede
        the speculation's generation)."""
        llm, scorer, messages = self.engines.llm, self.engines.scorer, self.messages(text)

        started: list[Generation] = []
        warming = Warming()
        if self.llm_lane == REMOTE_LANE:  # a request per partial transcript would only queue on the server
            warming.stopped = True
            return warming

        def run(tok: CancelToken) -> object:
            if warming.stopped or self._pause_decode_waiting:  # the pause's speculation prefills from here
                return None
            if not started:
                started.append((scorer or llm).start(messages, 1))
            return None if _prefill_slices(started[0], tok) else LATER

        def done(unit: UnitHandle) -> None:
            if unit.result() is LATER:  # it yielded: it goes on after the more urgent work
                warming.handle = self.submit(turn, Stage.LLM, Priority.BACKGROUND, run, on_done=done,
                                             label=Label.WARM_CACHE, lane=self.llm_lane)

        warming.handle = self.submit(turn, Stage.LLM, Priority.BACKGROUND, run, on_done=done, label=Label.WARM_CACHE,
                                     lane=self.llm_lane)
        return warming

    def speculate(self, turn: int, text: str, number: int) -> Speculation:
        """Prefill the reply's prompt and read the text end-of-utterance score (`Scored`; the score is None when
        the language model gives none). The generation is created on the device lane, like every other LLM call.
        A long prompt goes in slices: when a more urgent unit (the recognizer) waits, the prefill yields to it and
        goes on in a new unit queued just ahead of the reply's first chunk."""
        llm, scorer, messages = self.engines.llm, self.engines.scorer, self.messages(text)
        speculation, max_tokens = Speculation(turn, text, number, self.scheduler.clock()), self.max_reply_tokens
        self._pause_decode_waiting = False

        def run(tok: CancelToken) -> object:
            if speculation.generation is None:
                speculation.generation = (scorer or llm).start(messages, max_tokens)
            generation = speculation.generation
            if not _prefill_slices(generation, tok, SPECULATION_SLICE_TOKENS):
                return LATER
            # One evaluation of the rest of the prompt reads the score too (a server: the score's request first);
            # evaluating the score's part alone first, to tell the rule ~0.1 s sooner, made the first audio later.
            generation.prefill()
            speculation.score = cast(ScoredGeneration, generation).eou_score() if scorer is not None else None
            self.post(Scored(speculation))
            return UnitResult(None, {"prompt_tokens": generation.prompt_tokens,
                                     "reused_tokens": generation.reused_tokens, "text_log10": speculation.score})

        def done(handle: UnitHandle) -> None:
            if handle.result() is LATER:
                speculation.prefill = self.submit(turn, Stage.LLM, Priority.LLM - 1, run, on_done=done,
                                                  label=Label.PREFILL, meta={"speculation": number},
                                                  lane=self.llm_lane)

        speculation.prefill = self.submit(turn, Stage.LLM, Priority.LLM, run, on_done=done, label=Label.PREFILL,
                                          meta={"speculation": number}, lane=self.llm_lane)
        return speculation


def block_level_db(frame: np.ndarray) -> float:
    """Mean power of a block in dBFS (floored at -120)."""
    samples = np.asarray(frame, dtype=np.float32).reshape(-1)
    return -120.0 if samples.size == 0 else 10.0 * float(np.log10(float(np.mean(samples * samples)) + 1e-12))


LATER = object()  # a prefill unit that yielded: the rest of the prompt goes in the next unit
SLICE_BUDGET_S = 0.12  # a prompt slice takes about this long, so a waiting recognizer unit waits no longer
# The speculation's prompt after the pause: what the warm-up left (the last words and the template's tail, ~5-20
# tokens) in one batch, several times faster per token than one-token slices on a CPU (1.5B, 2 AMD cores, repacked:
# 1 token 32 ms, 4: 87 ms, 16: 221 ms); the recognizer has little left to do once the user pauses
SPECULATION_SLICE_TOKENS = 32
WARM_UP_SLICE_TOKENS = 64  # the system prompt at start (1.5B, 2 CPU cores: 11 ms a token in 40s, 30 in 1-8s)


class _SliceSize:
    """Prompt tokens per slice, sized from the last slice's time per token: one or two tokens for a 1.5B model
    on two CPU cores (about 40 ms a token), hundreds on a GPU (where small batches would waste it)."""

    tokens = 4

    @classmethod
    def measured(cls, tokens: int, seconds: float) -> None:
        """At most double or halve per slice: a slice that found its tokens in the cache says nothing."""
        if tokens > 0 and seconds > 0:
            fit = int(SLICE_BUDGET_S * tokens / seconds)
            cls.tokens = max(1, min(512, cls.tokens * 2, max(cls.tokens // 2, fit)))


def _prefill_slices(generation: Generation, tok: CancelToken, size: int | None = None) -> bool:
    """Evaluate the prompt slice by slice while nothing more urgent waits; False when it yielded. `size` fixes
    the slice size (the system prompt's warm-up: large slices, several times faster per token on a CPU)."""
    if isinstance(generation, SlicedPrefill):
        while True:
            tokens, started = size or _SliceSize.tokens, time.perf_counter()
            if generation.prefill_slice(tokens):
                return True
            if size is None:
                _SliceSize.measured(tokens, time.perf_counter() - started)
            if tok.yield_requested or tok.cancelled:
                return False
    return True
