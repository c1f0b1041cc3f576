"""Estimates the delay between what the speaker plays and its echo in the microphone, from the signals alone:
generalised cross-correlation with phase transform (GCC-PHAT) over the last couple of seconds, taken only when
the speaker played enough to correlate against, with a peak that stands out; the median of recent estimates is
reported. It is the same figure the desktop app shows in its diagnostics and passes to the echo canceller.

`add` runs on the audio thread and only copies samples; the correlation (a 64k-point FFT, a few ms) runs on a
worker thread (one for the whole process), so the audio callback never waits for it."""
from __future__ import annotations

import queue
import threading
from collections import deque

import numpy as np

WINDOW_S = 2.0  # signal correlated per estimate
EVERY_S = 1.0  # one estimate per second of audio at most
MAX_DELAY_S = 0.5  # the largest delay searched
MIN_FAR_RMS = 10 ** (-45 / 20)  # the speaker must have played at least this loud during the window
MIN_PEAK_RATIO = 6.0  # the correlation peak must stand this far above the typical correlation value


def gcc_phat_delay(far: np.ndarray, mic: np.ndarray, rate: int, max_delay_s: float = MAX_DELAY_S
                   ) -> tuple[float, float]:
    """(delay in seconds of `far`'s echo inside `mic`, peak prominence); signals of equal length, same clock."""
    n = 1 << int(np.ceil(np.log2(len(far) + len(mic))))
    spectrum = np.fft.rfft(mic, n) * np.conj(np.fft.rfft(far, n))
    spectrum /= np.abs(spectrum) + 1e-12
    correlation = np.fft.irfft(spectrum, n)[: int(max_delay_s * rate) + 1]  # non-negative lags only
    magnitude = np.abs(correlation)
    lag = int(np.argmax(magnitude))
    typical = float(np.median(magnitude)) + 1e-12
    return lag / rate, float(magnitude[lag] / typical)


_jobs: queue.Queue = queue.Queue()  # (tracker, far, mic) for the one worker thread every tracker shares
_worker_lock = threading.Lock()
_worker: list[threading.Thread] = []


def _run_jobs() -> None:
    while True:
        tracker, far, mic = _jobs.get()
        try:
            tracker.estimate(far, mic)
        finally:
            tracker._pending = False
            _jobs.task_done()


def _submit(tracker: DelayTracker, far: np.ndarray, mic: np.ndarray) -> None:
    with _worker_lock:
        if not _worker:
            _worker.append(threading.Thread(target=_run_jobs, name="echo-delay", daemon=True))
            _worker[0].start()
    _jobs.put((tracker, far, mic))


class DelayTracker:
    """Feed it the far-end and microphone samples block by block; `delay_ms()` is the current estimate."""

    def __init__(self, rate: int = 16000):
        self.rate = rate
        self._size = int(WINDOW_S * rate)
        self._far = np.zeros(self._size, np.float32)
        self._mic = np.zeros(self._size, np.float32)
        self._since = 0
        self._estimates: deque[float] = deque(maxlen=5)
        self._lock = threading.Lock()
        self._pending = False  # an estimate of this tracker is queued or running: later ones are skipped

    def add(self, far: np.ndarray, mic: np.ndarray) -> None:
        """Both streams are appended as they come: the lag found is the delay from the moment a speaker sample
        was handed over to the moment its echo was captured, which is what the canceller needs."""
        self._far = _push(self._far, far)
        self._mic = _push(self._mic, mic)
        self._since += len(mic)
        if self._since >= EVERY_S * self.rate:
            self._since = 0
            if not self._pending:
                self._pending = True
                _submit(self, self._far, self._mic)  # _push makes new arrays: these stay unchanged

    def wait(self) -> None:
        """Block until the estimates asked for so far are made (tests, benchmarks)."""
        _jobs.join()

    def estimate(self, far: np.ndarray, mic: np.ndarray) -> None:
        if float(np.sqrt(np.mean(np.square(far, dtype=np.float64)))) < MIN_FAR_RMS:
            return
        delay, prominence = gcc_phat_delay(far, mic, self.rate)
        if prominence >= MIN_PEAK_RATIO:
            with self._lock:
                self._estimates.append(delay * 1000.0)

    def delay_ms(self) -> float | None:
        with self._lock:
            return float(np.median(self._estimates)) if self._estimates else None


def _push(ring: np.ndarray, samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples, np.float32)[-len(ring):]
    return np.concatenate([ring[len(samples):], samples])
