"""The last minute of microphone audio, addressable by session-clock time, so that a user turn's audio can be
handed to Smart Turn and ASR from its start (plus a little pre-roll) however it was split into blocks. It lives in
memory only and is overwritten continuously: nothing of it reaches the disk."""
from __future__ import annotations

import threading

import numpy as np


class MicRing:
    def __init__(self, rate: int = 16000, seconds: float = 60.0):
        self.rate = rate
        self._buf = np.zeros(int(rate * seconds), dtype=np.float32)
        self._written = 0  # samples written since the start
        self._t_end = 0.0  # session time of the sample after the last one written
        self._lock = threading.Lock()

    def append(self, samples: np.ndarray, t_end: float) -> None:
        n = len(samples)
        with self._lock:
            start = self._written % len(self._buf)
            first = min(n, len(self._buf) - start)
            self._buf[start:start + first] = samples[:first]
            self._buf[: n - first] = samples[first:]
            self._written += n
            self._t_end = t_end

    @property
    def t_end(self) -> float:
        return self._t_end

    def since(self, t_from: float, t_to: float | None = None) -> np.ndarray:
        """Audio captured from `t_from` to `t_to` (default: now), clipped to what the ring still holds."""
        with self._lock:
            t_to = self._t_end if t_to is None else min(t_to, self._t_end)
            n = int(round((t_to - t_from) * self.rate))
            back = int(round((self._t_end - t_to) * self.rate))
            n = max(0, min(n, len(self._buf) - back, self._written - back))
            end = self._written - back
            idx = np.arange(end - n, end) % len(self._buf)
            return self._buf[idx].copy()
