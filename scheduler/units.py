"""Work units and their handles: what a caller submits to a lane and what it gets back.

A ``WorkUnit`` is one bounded step of work (a plain callable that takes a ``CancelToken``), tagged
with a stage name, a turn id, a priority and the lane it belongs on. ``UnitHandle`` is the
future-like object ``Scheduler.submit`` returns. Nothing here knows what the work is.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .spans import Span

NO_TURN = -1
"""Turn id for units that belong to no turn (e.g. background work); it cannot be cancelled as a turn."""

DEVICE_LANE = "device"
CPU_LANE = "cpu"
REMOTE_LANE = "remote"
"""For units that wait on another machine (a server): waiting there holds none of this machine's compute."""


class Priority(enum.IntEnum):
    """Suggested priority levels; lower runs first. Callers may pass any int instead."""

    URGENT = 0  # interruption handling
    ASR = 10
    TURN = 15
    TTS = 20
    RENDER = 20  # alias of TTS, the name the stream driver uses
    LLM = 30
    PRODUCE = 30  # alias of LLM, the name the stream driver uses
    BACKGROUND = 50


class UnitCancelledError(Exception):
    """Raised by ``UnitHandle.result`` for a cancelled unit, and by ``CancelToken.raise_if_cancelled``."""


class CancelToken:
    """A one-way flag a running unit polls at its step boundaries."""

    __slots__ = ("_event", "_more_urgent")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._more_urgent: Callable[[], bool] | None = None  # set by the lane while the unit runs

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def yield_requested(self) -> bool:
        """A more urgent unit is waiting on this unit's lane. A unit whose work can be continued by a later unit
        (a chunk of generation, a slice of a prompt) should end at its next step boundary, so the waiting unit
        runs after one step rather than after the whole unit."""
        more_urgent = self._more_urgent
        return more_urgent is not None and more_urgent()

    def is_set(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        self._event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled or ``timeout`` seconds pass; returns whether it is cancelled."""
        return self._event.wait(timeout)

    def raise_if_cancelled(self) -> None:
        """Raise ``UnitCancelledError`` if cancelled; the unit then ends with status "cancelled"."""
        if self._event.is_set():
            raise UnitCancelledError("unit cancelled")


@dataclass(frozen=True)
class UnitResult:
    """Optional wrapper a unit's callable may return to attach metadata to its span.

    ``handle.result()`` returns ``value``; ``meta`` is merged over ``WorkUnit.meta`` in the span.
    """

    value: Any = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class WorkUnit:
    """One bounded step of work.

    ``fn(token)`` runs on the lane's thread and should return within tens to hundreds of ms,
    checking ``token.cancelled`` between its inner steps. ``meta`` ends up in the unit's span.
    """

    fn: Callable[[CancelToken], Any]
    stage: str
    turn: int
    priority: int
    lane: str = DEVICE_LANE
    label: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(f"WorkUnit.fn must be callable, got {type(self.fn).__name__}")
        if not isinstance(self.stage, str) or not self.stage:
            raise ValueError(f"WorkUnit.stage must be a non-empty string, got {self.stage!r}")
        if not isinstance(self.lane, str) or not self.lane:
            raise ValueError(f"WorkUnit.lane must be a non-empty string, got {self.lane!r}")
        for name in ("turn", "priority"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"WorkUnit.{name} must be an int, got {value!r}")
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))


class UnitState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (UnitState.DONE, UnitState.FAILED, UnitState.CANCELLED)


OnDone = Callable[["UnitHandle"], None]


class UnitHandle:
    """Future-like view of a submitted unit.

    State moves QUEUED -> RUNNING -> DONE/FAILED/CANCELLED, or QUEUED -> CANCELLED. Transitions
    are made by the scheduler only; the terminal state is reached exactly once.
    """

    def __init__(self, unit: WorkUnit, unit_id: int, lane: str, queued_at: float,
                 on_done: OnDone | None, canceller: Callable[..., Any] | None = None) -> None:
        self.unit = unit
        self.unit_id = unit_id
        self.lane = lane
        self.queued_at = queued_at
        self.started_at: float | None = None
        self.token = CancelToken()
        self._on_done = on_done
        self._canceller = canceller
        self._state = UnitState.QUEUED
        self._value: Any = None
        self._error: BaseException | None = None
        self._span: Span | None = None
        self._finished = threading.Event()

    # -- read side ---------------------------------------------------------------------------
    @property
    def state(self) -> UnitState:
        return self._state

    @property
    def span(self) -> Span | None:
        """The recorded span once the unit is done, else None."""
        return self._span

    def done(self) -> bool:
        """True once the unit reached a terminal state (done, failed or cancelled)."""
        return self._finished.is_set()

    def cancelled(self) -> bool:
        return self._finished.is_set() and self._state is UnitState.CANCELLED

    def wait(self, timeout: float | None = None) -> bool:
        """Block until terminal; returns False if ``timeout`` passed first."""
        return self._finished.wait(timeout)

    def result(self, timeout: float | None = None) -> Any:
        """The unit's return value; re-raises its exception; ``UnitCancelledError`` if cancelled.

        Raises ``TimeoutError`` if the unit is not terminal within ``timeout`` seconds.
        """
        if not self._finished.wait(timeout):
            raise TimeoutError(f"unit {self.unit_id} ({self.unit.stage}) not done after {timeout}s")
        if self._state is UnitState.CANCELLED:
            raise UnitCancelledError(f"unit {self.unit_id} ({self.unit.stage}) was cancelled")
        if self._error is not None:
            raise self._error
        return self._value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The exception the unit raised (None if it succeeded); waits like ``result``."""
        if not self._finished.wait(timeout):
            raise TimeoutError(f"unit {self.unit_id} ({self.unit.stage}) not done after {timeout}s")
        if self._state is UnitState.CANCELLED:
            raise UnitCancelledError(f"unit {self.unit_id} ({self.unit.stage}) was cancelled")
        return self._error

    def cancel(self, wait: bool = False, timeout: float = 1.0) -> Any:
        """Cancel only this unit (see ``Scheduler.cancel_unit``); returns a ``CancelReport``."""
        if self._canceller is None:
            raise RuntimeError("this handle is not attached to a scheduler")
        return self._canceller(self, wait=wait, timeout=timeout)

    def __repr__(self) -> str:
        u = self.unit
        return (f"UnitHandle(id={self.unit_id}, lane={self.lane!r}, stage={u.stage!r}, "
                f"turn={u.turn}, state={self._state.value})")

    # -- scheduler side (call with care: exactly once per handle) ----------------------------
    def _set_terminal(self, state: UnitState, value: Any, error: BaseException | None,
                      span: Span) -> None:
        self._state = state
        self._value = value
        self._error = error
        self._span = span
        self._finished.set()
