"""The interleaving policy: given a stream's state, what to run next and how many tokens to ask for.

Pure functions over frozen dataclasses; no threads, no clock. ``InterleavedStream`` asks
``decide`` after every unit and submits what it returns.

Interleaved mode (the product): one unit at a time. A ready segment is rendered before anything
is produced (so media starts early and the lead never runs dry while text is waiting). Otherwise
produce: the first chunk is capped at ``first_chunk_max_tokens`` until the first segment exists;
then ``chunk_tokens`` while the lead is under ``lead_target_s``, doubling up to ``max_chunk_tokens``
while it is at least ``lead_comfortable_s``, and holding the last size in between.

Sequential mode: produce everything in ``max_chunk_tokens`` steps, then render every segment.
Concurrent mode: a producer chain and a renderer chain each keep one unit outstanding at once.

A held stream (any mode) stops after its first rendered segment until it is released: a reply prepared before
it is known to be wanted costs at most one segment.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .settings import Mode, SchedulerSettings


class StepKind(enum.Enum):
    PRODUCE = "produce"
    RENDER = "render"
    DONE = "done"


@dataclass(frozen=True)
class Step:
    """One thing to start: produce up to ``max_tokens``, render the next ready segment, or finish."""

    kind: StepKind
    max_tokens: int = 0


DONE = Step(StepKind.DONE)
RENDER = Step(StepKind.RENDER)


@dataclass(frozen=True)
class StreamState:
    """What the policy needs to know about a stream at one decision point.

    ``segments_emitted`` counts segments the splitter has cut so far (rendered or not);
    ``ready_segments`` those cut and not yet handed to a render unit; ``lead_s`` the seconds of
    rendered-but-unconsumed media; ``last_chunk_tokens`` the size of the previous produce step (0
    before the first); ``producing``/``rendering`` whether such a unit is outstanding.
    """

    producer_finished: bool = False
    ready_segments: int = 0
    segments_emitted: int = 0
    lead_s: float = 0.0
    last_chunk_tokens: int = 0
    producing: bool = False
    rendering: bool = False
    held: bool = False  # the caller holds the stream back after its first rendered segment (e.g. speculation)
    segments_rendered: int = 0


def next_chunk_tokens(state: StreamState, settings: SchedulerSettings) -> int:
    """How many tokens the next produce step of an interleaved stream may generate."""
    if state.segments_emitted == 0:
        return settings.first_chunk_max_tokens
    if state.lead_s < settings.lead_target_s:
        return settings.chunk_tokens
    previous = min(max(state.last_chunk_tokens, settings.chunk_tokens), settings.max_chunk_tokens)
    if state.lead_s >= settings.lead_comfortable_s:
        return min(previous * 2, settings.max_chunk_tokens)
    return previous


def decide(state: StreamState, settings: SchedulerSettings) -> tuple[Step, ...]:
    """The steps to start now: empty to wait for an outstanding unit, ``(DONE,)`` when finished."""
    if state.held and state.segments_rendered >= 1 and not (state.producer_finished and not state.ready_segments):
        return ()  # held after its first segment: nothing more until released
    if settings.mode is Mode.CONCURRENT:
        return _decide_concurrent(state, settings)
    if state.producing or state.rendering:
        return ()
    if settings.mode is Mode.SEQUENTIAL:
        if not state.producer_finished:
            return (Step(StepKind.PRODUCE, settings.max_chunk_tokens),)
        return (RENDER,) if state.ready_segments else (DONE,)
    if state.ready_segments:
        return (RENDER,)
    if state.producer_finished:
        return (DONE,)
    return (Step(StepKind.PRODUCE, next_chunk_tokens(state, settings)),)


def _decide_concurrent(state: StreamState, settings: SchedulerSettings) -> tuple[Step, ...]:
    steps: list[Step] = []
    if not state.producing and not state.producer_finished:
        first = state.segments_emitted == 0
        steps.append(Step(StepKind.PRODUCE,
                          settings.first_chunk_max_tokens if first else settings.chunk_tokens))
    if not state.rendering and state.ready_segments:
        steps.append(RENDER)
    if (not steps and state.producer_finished and not state.ready_segments
            and not state.producing and not state.rendering):
        steps.append(DONE)
    return tuple(steps)
