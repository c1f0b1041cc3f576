"""The echo canceller's far-end reference on the sound card: what the speaker played, handed over sample for sample
in step with the microphone.

The output callback reads the playback buffer ahead of the loudspeaker, in bursts whose size and timing depend on
the sound server (PulseAudio reads 10-40 ms at a time). Handing the canceller those samples as they are read gives
it a reference whose lead over the echo keeps changing, and it loses the echo path. Pacing the reference by the
streams' timestamps was tried too: PortAudio's DAC and ADC times drift against the sample counts by ~0.1 % on
PulseAudio, so every correction made the delay jump by 10-30 ms, and the canceller lost the path at each jump.

Here the two streams are paired by sample count, as they run on one clock: every microphone block takes exactly as
many samples from a FIFO of what the output side read. A cushion collected before the first take absorbs the
bursts; an underrun that PortAudio reports puts that much silence in the FIFO (its size from the DAC times, to a
few ms). A take that finds the FIFO short (the output side was late: its thread did not get the CPU in time)
gives silence for what is missing and remembers the debt: the next samples the output side hands over pay it, so
the pairing stays where it was and the canceller keeps its echo path. (Collecting a fresh cushion instead shifted
the reference by tens of ms at every late read, and WebRTC AEC3 let the echo through for a second or two while it
re-adapted: the app heard itself.) A debt still unpaid after `FORGIVE_S` means the speaker played silence that
nobody reported (PulseAudio does not always flag an underrun, and a reported one is measured to a few ms): the
silence already given out stands for it and the debt is forgiven. Without that, a debt as large as what the output
side reads between two takes is never paid off and the reference stays silent for good (measured: the app then
interrupted itself). An underrun reported after a forgiven debt counts only the silence not given out yet. Too
much waiting for longer than `FULL_S` (clock drift) drops back to the cushion; a pile that the microphone side
takes down within that time is its own thread catching up after a stall (0.8 s of buffered blocks at once was
seen on a loaded 2-core machine), and it needs every one of those samples. All are rare and counted. The delay
the canceller sees is the output read-ahead plus the cushion plus the acoustic path: large, but constant, which
is what it needs."""
from __future__ import annotations

import threading
from collections import deque

import numpy as np

CUSHION_S = 0.06  # collected before the first take: covers the output side's bursts
MAX_S = 0.4  # more than this waiting means the clocks drifted apart: drop back to the cushion
FULL_S = 1.5  # ... for this long (of microphone samples) in a row
FORGIVE_S = 0.1  # a debt unpaid for this long was silence the speaker played (an unreported underrun)


class FarReference:
    """Called from two audio threads: `add`/`gap` by the output side, `take` by the input side."""

    def __init__(self, rate: int = 16000, cushion_s: float = CUSHION_S, max_s: float = MAX_S,
                 forgive_s: float = FORGIVE_S):
        self.rate = rate
        self.cushion, self.max = int(round(cushion_s * rate)), int(round(max_s * rate))
        self.forgive = int(round(forgive_s * rate))
        self.full = int(round(FULL_S * rate))
        self._chunks: deque[np.ndarray] = deque()
        self._count = 0  # samples waiting
        self._started = False
        self._owed = 0  # samples given out as silence before the output side read them: its next samples pay
        self._owing = 0  # samples taken since the debt arose
        self._full_for = 0  # samples taken since more than `max` started waiting
        self._forgiven_silence = 0  # silence given out and forgiven since the output side last read samples
        self.starved = 0  # takes that found too little, for diagnostics
        self.forgiven = 0  # debts taken for an unreported underrun
        self.dropped = 0  # samples dropped because too many waited (the reference shifted earlier)
        self._lock = threading.Lock()

    def add(self, samples: np.ndarray) -> None:
        """The output side read these samples for the speaker, in order."""
        samples = np.asarray(samples, np.float32)
        with self._lock:
            self._forgiven_silence = 0
            self._append(samples)

    def gap(self, seconds: float) -> None:
        """The speaker ran dry for `seconds` (an underrun): it played that much silence."""
        n = int(round(seconds * self.rate))
        with self._lock:
            n, self._forgiven_silence = n - self._forgiven_silence, 0  # some of it was given out already
            if n > 0:
                self._append(np.zeros(min(n, self.max), np.float32))

    def _append(self, samples: np.ndarray) -> None:
        if self._owed:  # their place was taken already (as silence) while the output side was late
            paid = min(self._owed, len(samples))
            self._owed -= paid
            samples = samples[paid:]
        if len(samples):
            self._chunks.append(samples)
            self._count += len(samples)

    def take(self, n: int) -> np.ndarray:
        """The next `n` samples of the reference (silence until the cushion is there)."""
        with self._lock:
            if not self._started:
                if self._count < self.cushion + n:
                    return np.zeros(n, np.float32)
                self._started = True
            self._full_for = self._full_for + n if self._count > self.max else 0
            if self._full_for > self.full:
                self.dropped += self._pop(self._count - self.cushion)
                self._full_for = 0
            out = np.zeros(n, np.float32)
            filled = self._pop(n, out)
            if filled < n:  # the output side is late: what it reads next takes the place of this silence
                self.starved += 1
                self._owed += n - filled
            self._owing = self._owing + n if self._owed else 0
            if self._owing > self.forgive:  # never paid: the speaker played that silence
                self._forgiven_silence += self._owed
                self._owed = self._owing = 0
                self.forgiven += 1
            return out

    def _pop(self, n: int, out: np.ndarray | None = None) -> int:
        """Removes up to `n` of the oldest samples waiting, copied into `out` when given; returns how many."""
        done = 0
        while done < n and self._chunks:
            chunk = self._chunks[0]
            used = min(n - done, len(chunk))
            if out is not None:
                out[done:done + used] = chunk[:used]
            if used == len(chunk):
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk[used:]
            done += used
        self._count -= done
        return done
