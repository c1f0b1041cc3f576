"""A simulated loudspeaker-to-microphone path for headless runs: what the agent plays comes back into the
microphone attenuated (`level_db`), late (`delay_ms`) and, optionally, with a room's reverberation (an
exponentially decaying tail), so echo and double talk can be tested without hardware."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REVERB_RT60_S = 0.3  # the simulated room's reverberation time
REVERB_LEVEL_DB = -12.0  # the reverberant tail's energy relative to the direct sound


@dataclass(frozen=True)
class EchoPath:
    """The simulated path's settings (`cadence headless --echo-db --echo-delay-ms --echo-reverb`)."""

    level_db: float = -20.0
    delay_ms: float = 100.0
    reverb: bool = False

    def build(self, rate: int, block: int) -> SpeakerEcho:
        return SpeakerEcho(rate, block, self.level_db, self.delay_ms, self.reverb)


def room_response(rate: int, reverb: bool, seed: int = 7) -> np.ndarray:
    """Impulse response with a unit direct path; with `reverb`, a decaying noise tail starting 5 ms later."""
    if not reverb:
        return np.ones(1, np.float32)
    n = int(REVERB_RT60_S * rate)
    t = np.arange(n) / rate
    tail = np.random.default_rng(seed).standard_normal(n) * 10 ** (-3 * t / REVERB_RT60_S)  # -60 dB at RT60
    tail *= 10 ** (REVERB_LEVEL_DB / 20) / np.sqrt(np.sum(tail ** 2))
    response = np.zeros(n + int(0.005 * rate), np.float32)
    response[0] = 1.0
    response[-n:] += tail.astype(np.float32)
    return response


class SpeakerEcho:
    """Speaker block i (played while microphone block i+1 is captured) returns in the microphone `delay_ms`
    later. Call `play()` with each speaker block, `add_to()` with each microphone block, in block order."""

    def __init__(self, rate: int, block: int, level_db: float = -20.0, delay_ms: float = 100.0,
                 reverb: bool = False):
        self.rate, self.block = rate, block
        self.gain = 10 ** (level_db / 20)
        self.delay = int(round(delay_ms * rate / 1000))
        self.response = room_response(rate, reverb) * self.gain
        # echo samples on the microphone's timeline, starting at microphone sample `self._base`
        self._pending = np.zeros(self.delay + block + len(self.response), np.float32)
        self._base = 0
        self._played = 0  # speaker blocks played so far

    def play(self, out: np.ndarray) -> None:
        start = (self._played + 1) * self.block + self.delay - self._base  # where it lands, relative to _base
        self._played += 1
        if not np.any(out):
            return
        echo = np.convolve(out, self.response).astype(np.float32)
        end = start + len(echo)
        if end > len(self._pending):
            self._pending = np.pad(self._pending, (0, end - len(self._pending)))
        self._pending[start:end] += echo

    def add_to(self, mic: np.ndarray) -> np.ndarray:
        n = len(mic)
        echo = self._pending[:n]
        if len(echo) < n:
            echo = np.pad(echo, (0, n - len(echo)))
        self._pending = np.concatenate([self._pending[n:], np.zeros(n, np.float32)])
        self._base += n
        return (mic + echo).astype(np.float32)
