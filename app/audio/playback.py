"""The playback buffer between the reply pipeline and the speaker: TTS audio goes in (any sample rate, resampled
to the device rate), the audio callback takes fixed-size blocks out, and the buffer knows exactly how much of each
turn's reply has been played. That is what "first agent audio", the audio lead and "history holds only what the
user heard" are measured from. `read()` never blocks for long and never raises in the audio callback."""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from engines.audio_io import resample


@dataclass(frozen=True, slots=True)
class PlaybackNote:
    """What a `read()` played of one turn: emitted to the session as PlaybackProgress."""

    turn: int
    played_s: float  # total seconds of this turn's reply played so far
    first: bool  # this read played the turn's first sample
    offset: int  # index within the block where this turn's audio starts
    drained: bool  # nothing of this turn is left in the buffer


class PlaybackBuffer:
    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self._lock = threading.Lock()
        self._queue: deque[tuple[int, np.ndarray]] = deque()  # (turn, samples), consumed from the left
        self._head = 0  # samples of queue[0] already played
        self._played: dict[int, int] = {}  # turn -> samples played
        self._queued = 0  # samples waiting
        self._paused = False
        self._held: set[int] = set()  # turns whose audio waits, unheard, until released (a speculative reply)

    def push(self, turn: int, samples: np.ndarray, sample_rate: int) -> float:
        """Queue reply audio; returns its duration in seconds."""
        audio = resample(np.asarray(samples, dtype=np.float32), sample_rate, self.sample_rate)
        if len(audio) == 0:
            return 0.0
        with self._lock:
            self._queue.append((turn, audio))
            self._queued += len(audio)
        return len(audio) / self.sample_rate

    def read(self, frames: int) -> tuple[np.ndarray, list[PlaybackNote]]:
        """The next `frames` samples (silence where nothing is queued) and what was played of which turn."""
        out = np.zeros(frames, dtype=np.float32)
        notes: dict[int, PlaybackNote] = {}
        pos = 0
        with self._lock:
            while pos < frames and self._queue and not self._paused and self._queue[0][0] not in self._held:
                turn, audio = self._queue[0]
                take = min(frames - pos, len(audio) - self._head)
                out[pos:pos + take] = audio[self._head:self._head + take]
                before = self._played.get(turn, 0)
                self._played[turn] = before + take
                self._head += take
                self._queued -= take
                if self._head >= len(audio):
                    self._queue.popleft()
                    self._head = 0
                first = before == 0 and turn not in notes
                prev = notes.get(turn)
                notes[turn] = PlaybackNote(turn, self._played[turn] / self.sample_rate,
                                           first or bool(prev and prev.first),
                                           prev.offset if prev else pos, False)
                pos += take
            pending = {t for t, _ in self._queue}
        return out, [
            PlaybackNote(n.turn, n.played_s, n.first, n.offset, n.turn not in pending) for n in notes.values()
        ]

    def flush(self, turn: int | None = None) -> float:
        """Drop queued audio (of one turn, or all); returns the seconds dropped."""
        with self._lock:
            keep: deque[tuple[int, np.ndarray]] = deque()
            dropped = 0
            for i, (t, audio) in enumerate(self._queue):
                if turn is None or t == turn:
                    dropped += len(audio) - (self._head if i == 0 else 0)
                else:
                    keep.append((t, audio))
            if self._queue and (turn is None or self._queue[0][0] == turn):
                self._head = 0
            self._paused = False
            self._queue = keep
            if turn is None:
                self._held.clear()
            else:
                self._held.discard(turn)
            self._queued -= dropped
        return dropped / self.sample_rate

    def hold(self, turn: int) -> None:
        """Keep this turn's audio queued and silent until `release(turn)` (or dropped by `flush(turn)`)."""
        with self._lock:
            self._held.add(turn)

    def release(self, turn: int) -> None:
        with self._lock:
            self._held.discard(turn)

    def pause(self) -> None:
        """Hold playback (silence out, queued audio kept) until resume()."""
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False

    def lead_s(self) -> float:
        """Seconds of audio queued but not yet played (the audio lead)."""
        with self._lock:
            return self._queued / self.sample_rate

    def queued_s(self, turn: int) -> float:
        """Seconds of this turn's audio still waiting to be played."""
        with self._lock:
            waiting = sum(len(audio) for t, audio in self._queue if t == turn)
            if self._queue and self._queue[0][0] == turn:
                waiting -= self._head
            return waiting / self.sample_rate

    def played_s(self, turn: int) -> float:
        with self._lock:
            return self._played.get(turn, 0) / self.sample_rate

    def forget(self, turn: int) -> None:
        """Drop the bookkeeping of a finished turn (long sessions must not grow)."""
        with self._lock:
            self._played.pop(turn, None)
