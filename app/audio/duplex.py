"""Audio devices as the session sees them: a duplex stream that hands over one microphone block at a time and
takes one speaker block from the playback buffer in the same callback.

`BlockClock` maps sample indices to the session clock (time.perf_counter): input sample k was captured at
`t0 + k / rate`; output written in the callback of block i starts playing one block later, at `t0 + (i+1) * block /
rate`. Both the headless WAV device and the sounddevice device report times this way, so span-based and
waveform-based latency figures come from one clock."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from app.audio.playback import PlaybackNote


@dataclass(frozen=True, slots=True)
class Block:
    index: int  # block number since the stream started
    mic: np.ndarray  # float32 mono at the session rate (16 kHz)
    t_end: float  # session-clock time of the last captured sample of this block
    notes: tuple[PlaybackNote, ...]  # what the speaker output of this callback played
    t_out: float  # session-clock time at which this callback's output starts playing
    out: np.ndarray | None = None  # the 16 kHz samples handed to the speaker since the previous block (the
    # echo canceller's far-end reference: exactly what the speaker plays)


BlockHandler = Callable[[Block], None]


@dataclass(frozen=True, slots=True)
class BlockClock:
    t0: float
    rate: int
    block: int

    def sample_time(self, k: float) -> float:
        return self.t0 + k / self.rate

    def out_time(self, index: int, offset: int = 0) -> float:
        return self.t0 + ((index + 1) * self.block + offset) / self.rate


class DuplexDevice(Protocol):
    """A running microphone + speaker pair."""

    rate: int
    block: int

    def start(self, on_block: BlockHandler) -> None: ...

    def stop(self) -> None: ...


@runtime_checkable
class Mutable(Protocol):
    """A device that can silence its microphone itself (the sound card: a muted input is no echo reference)."""

    muted: bool


@runtime_checkable
class Restartable(Protocol):
    """A device that can be reopened after it went away (the sound card's "Restart audio")."""

    def restart(self) -> None: ...
