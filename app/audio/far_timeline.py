"""What the speaker played, laid out on the session clock, so the echo canceller gets its far-end reference in
step with the microphone.

The output callback reads the playback buffer ahead of the loudspeaker, in bursts whose size and timing depend on
the sound server (PulseAudio reads 10-40 ms at a time, more after an underrun). Handing the canceller those
samples as they are read gives it a reference whose lead over the echo keeps changing, and it loses the echo path.
Here every chunk is stamped with the time its first sample reaches the DAC; the input side takes, for each
microphone block, the stretch that played during that block (a little ahead of it, so the reference always
precedes its echo). Underruns and silence become zeros, so the two streams stay sample for sample in step and
the delay the canceller sees is the acoustic one plus a constant lead."""
from __future__ import annotations

import threading
from collections import deque

import numpy as np

LEAD_S = 0.01  # the reference runs this far ahead of the microphone block it is paired with
RESYNC_S = 0.02  # a clock jump larger than this restarts the reading position; smaller jitter is ignored
HORIZON_S = 2.0  # chunks that ended longer ago than this are forgotten


class FarTimeline:
    """Called from two audio threads: `add` by the output side, `take` by the input side. Positions are kept in
    whole samples from the first time seen, so contiguous audio stays contiguous whatever the float rounding."""

    def __init__(self, rate: int = 16000, lead_s: float = LEAD_S, resync_s: float = RESYNC_S,
                 horizon_s: float = HORIZON_S):
        self.rate = rate
        self.lead, self.resync, self.horizon = (int(round(x * rate)) for x in (lead_s, resync_s, horizon_s))
        self._origin: float | None = None  # the session-clock time of sample 0
        self._chunks: deque[tuple[int, np.ndarray]] = deque()  # (sample index of the first sample, samples)
        self._end: int | None = None  # the sample index just after the last sample added
        self._pos: int | None = None  # the sample index of the next sample `take` hands out
        self.resyncs = 0  # reading-position restarts (clock jumps), for diagnostics
        self.late = 0  # samples that arrived after their time had been handed out (a reference with holes)
        self._lock = threading.Lock()

    def _index(self, t: float) -> int:
        if self._origin is None:
            self._origin = t
        return int(round((t - self._origin) * self.rate))

    def gap(self) -> None:
        """The output ran dry (an underrun): the next chunk starts where its timestamp says, not where the last
        one ended."""
        with self._lock:
            self._end = None

    def add(self, t_start: float, samples: np.ndarray) -> None:
        """`samples` start reaching the speaker at `t_start` (seconds, session clock)."""
        samples = np.asarray(samples, np.float32)
        if not len(samples):
            return
        with self._lock:
            start = self._index(t_start)
            if self._end is not None and abs(start - self._end) <= self.resync:
                start = self._end  # contiguous with the previous chunk: timestamp jitter is not a gap
            if self._pos is not None and start < self._pos:
                self.late += min(len(samples), self._pos - start)
            self._chunks.append((start, samples))
            self._end = start + len(samples)
            while self._chunks and self._chunks[0][0] + len(self._chunks[0][1]) < self._end - self.horizon:
                self._chunks.popleft()

    def take(self, t_start: float, n: int) -> np.ndarray:
        """The `n` samples that play from `t_start` + the lead: zeros where nothing was playing."""
        out = np.zeros(n, np.float32)
        with self._lock:
            want = self._index(t_start) + self.lead
            if self._pos is None or abs(self._pos - want) > self.resync:
                if self._pos is not None:
                    self.resyncs += 1
                self._pos = want
            pos, end = self._pos, self._pos + n
            for start, samples in self._chunks:
                first = start - pos  # where the chunk starts inside `out`
                lo, hi = max(first, 0), min(first + len(samples), n)
                if lo < hi:
                    out[lo:hi] = samples[lo - first:hi - first]
            while self._chunks and self._chunks[0][0] + len(self._chunks[0][1]) <= end:
                self._chunks.popleft()  # played entirely before the next block
            self._pos = end
        return out
