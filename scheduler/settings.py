"""The scheduler's settings: one typed, frozen, validated dataclass, plus the scheduling ``Mode``.

Validation errors are ``SettingsError`` (a ``ValueError``) whose ``field`` names the offending
field, so a config loader can report the exact key.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .spans import DEFAULT_SPAN_CAPACITY


class Mode(str, enum.Enum):
    """How device work is scheduled (for comparison benchmarks; ``INTERLEAVED`` is the product)."""

    INTERLEAVED = "interleaved"  # one device lane, all stages share it, ordered by priority
    CONCURRENT = "concurrent"  # one device-lane thread per stage, all competing for the device
    SEQUENTIAL = "sequential"  # one device lane; a stream produces all its text, then renders


class SettingsError(ValueError):
    """An invalid settings value; ``field`` is the name of the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class SchedulerSettings:
    """Every knob of the scheduler and the stream driver.

    Token counts bound one produce unit; lead values are seconds of rendered-but-unconsumed media.
    ``device_threads`` (None: all available cores) and ``cpu_lane_threads`` are the thread counts
    engines should use on each lane; the scheduler itself always runs one worker thread per lane.
    """

    mode: Mode = Mode.INTERLEAVED
    first_chunk_max_tokens: int = 24
    chunk_tokens: int = 32
    max_chunk_tokens: int = 96
    lead_target_s: float = 1.5
    lead_comfortable_s: float = 3.0
    cpu_lane_threads: int = 1
    device_threads: int | None = None
    span_capacity: int = DEFAULT_SPAN_CAPACITY

    def __post_init__(self) -> None:
        mode = self.mode
        if not isinstance(mode, Mode):
            try:
                mode = Mode(mode)
            except ValueError:
                choices = ", ".join(m.value for m in Mode)
                raise SettingsError("mode", f"must be one of {choices}, got {self.mode!r}") from None
            object.__setattr__(self, "mode", mode)
        for name in ("first_chunk_max_tokens", "chunk_tokens", "max_chunk_tokens",
                     "cpu_lane_threads", "span_capacity"):
            _require_int(name, getattr(self, name), minimum=1)
        if self.device_threads is not None:
            _require_int("device_threads", self.device_threads, minimum=1)
        for name in ("lead_target_s", "lead_comfortable_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SettingsError(name, f"must be a finite number of seconds, got {value!r}")
            if value < 0:
                raise SettingsError(name, f"must be >= 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.max_chunk_tokens < self.first_chunk_max_tokens:
            raise SettingsError("max_chunk_tokens", f"must be >= first_chunk_max_tokens "
                                                    f"({self.first_chunk_max_tokens}), got {self.max_chunk_tokens}")
        if self.max_chunk_tokens < self.chunk_tokens:
            raise SettingsError("max_chunk_tokens", f"must be >= chunk_tokens ({self.chunk_tokens}), "
                                                    f"got {self.max_chunk_tokens}")
        if self.lead_comfortable_s < self.lead_target_s:
            raise SettingsError("lead_comfortable_s", f"must be >= lead_target_s ({self.lead_target_s}), "
                                                      f"got {self.lead_comfortable_s}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SchedulerSettings:
        """Build from a plain mapping (e.g. a TOML table); unknown keys are a ``SettingsError``."""
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                raise SettingsError(str(key), f"unknown setting (known: {', '.join(sorted(known))})")
        return cls(**dict(values))

    def to_mapping(self) -> dict[str, Any]:
        """A plain dict suitable for TOML (mode as its string value; None values omitted)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = value.value if isinstance(value, Mode) else value
        return out


def _require_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(name, f"must be an integer, got {value!r}")
    if value < minimum:
        raise SettingsError(name, f"must be >= {minimum}, got {value}")
