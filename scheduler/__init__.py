"""Cadence's scheduler: lanes run bounded work units by priority; spans record what ran when.

It knows nothing about speech: stages are strings its callers choose. See docs/scheduler.md.
"""

from .core import CancelReport, LaneSnapshot, Scheduler
from .interleave import InterleavedStream, StreamSummary
from .policy import Step, StepKind, StreamState, decide, next_chunk_tokens
from .settings import Mode, SchedulerSettings, SettingsError
from .spans import Span, SpanLog
from .threads import available_cores, configure_thread_pools
from .units import (
    CPU_LANE,
    DEVICE_LANE,
    NO_TURN,
    REMOTE_LANE,
    CancelToken,
    Priority,
    UnitCancelledError,
    UnitHandle,
    UnitResult,
    UnitState,
    WorkUnit,
)

__all__ = [
    "CPU_LANE", "DEVICE_LANE", "NO_TURN", "REMOTE_LANE",
    "CancelReport", "CancelToken", "InterleavedStream", "LaneSnapshot", "Mode", "Priority",
    "Scheduler", "SchedulerSettings", "SettingsError", "Span", "SpanLog", "Step", "StepKind",
    "StreamState", "StreamSummary", "UnitCancelledError", "UnitHandle", "UnitResult", "UnitState",
    "WorkUnit", "available_cores", "configure_thread_pools", "decide", "next_chunk_tokens",
]
