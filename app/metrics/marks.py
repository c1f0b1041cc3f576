"""Spans for what is not a work unit (the user's speech, the agent's playback, a barge-in), added to the scheduler's
span log so that metrics and the timeline see one record of everything."""
from __future__ import annotations

import itertools

from scheduler import Scheduler, Span

_ids = itertools.count(-1, -1)  # negative ids: never collide with the scheduler's unit ids


def record_span(scheduler: Scheduler, lane: str, stage: str, turn: int, start: float, end: float, **meta) -> Span:
    span = Span(next(_ids), lane, stage, turn, stage, start, start, max(start, end), "ok", None, meta)
    scheduler.spans.append(span)
    return span
