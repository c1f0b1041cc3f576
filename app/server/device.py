"""A client's microphone and speaker as a session device: the audio a Realtime client appends is the microphone,
and what the playback buffer plays is sent back to it, both through the same block callback a sound card uses.

The block clock runs on the server at real-time pace, as a sound card's does: every 32 ms it takes the next 512
samples the client sent (silence when none has arrived: a client that stops sending has a silent microphone) and
the next 512 samples of reply audio, which go to the client at once. So what the session counts as played is what
the client has been sent, and a barge-in stops the audio within a block. Input arrives as 24 kHz pcm16 (resampled
to the session's 16 kHz with soxr's streaming resampler); output leaves at 24 kHz."""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np
import soxr

from app.audio.duplex import Block, BlockClock, BlockHandler
from app.audio.playback import PlaybackBuffer

CLIENT_RATE = 24_000


class InputOverflow(ValueError):
    """The client sent more audio than the buffer holds (it sends faster than real time for too long)."""


class NetworkDuplex:
    """Microphone blocks from a client's appended audio; speaker blocks sent to `send_audio(turn, pcm16 24 kHz)`."""

    def __init__(self, playback: PlaybackBuffer, send_audio: Callable[[int, bytes], None], rate: int = 16000,
                 block: int = 512, max_buffer_s: float = 30.0):
        if playback.sample_rate != rate:
            raise ValueError("the playback buffer must run at the device rate")
        self.rate, self.block = rate, block
        self.playback = playback
        self.clock: BlockClock | None = None
        self._send_audio = send_audio
        self._max_samples = int(max_buffer_s * rate)
        self._incoming: deque[np.ndarray] = deque()
        self._queued = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._down = soxr.ResampleStream(CLIENT_RATE, rate, 1, dtype="float32", quality="HQ")
        self._up = soxr.ResampleStream(rate, CLIENT_RATE, 1, dtype="float32", quality="HQ")
        self.received_s = 0.0  # client audio accepted so far (seconds)

    # ---- from the client ---------------------------------------------------------------------------------
    def append(self, pcm16: bytes) -> None:
        """Queue the client's 24 kHz mono pcm16 audio; InputOverflow when more than `max_buffer_s` waits."""
        if len(pcm16) % 2:
            raise ValueError("pcm16 audio must be a whole number of 2-byte samples")
        samples = np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768.0
        audio = self._down.resample_chunk(samples)
        with self._lock:
            if self._queued + len(audio) > self._max_samples:
                raise InputOverflow(f"the input buffer holds at most {self._max_samples / self.rate:.0f} s of audio")
            if len(audio):
                self._incoming.append(audio)
                self._queued += len(audio)
        self.received_s += len(samples) / CLIENT_RATE

    def clear(self) -> None:
        """Forget audio appended but not yet heard (input_audio_buffer.clear)."""
        with self._lock:
            self._incoming.clear()
            self._queued = 0

    def _take(self, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.float32)
        with self._lock:
            pos = 0
            while pos < n and self._incoming:
                chunk = self._incoming[0]
                k = min(n - pos, len(chunk))
                out[pos:pos + k] = chunk[:k]
                pos += k
                if k == len(chunk):
                    self._incoming.popleft()
                else:
                    self._incoming[0] = chunk[k:]
            self._queued -= pos
        return out

    # ---- the device --------------------------------------------------------------------------------------
    def start(self, on_block: BlockHandler) -> None:
        self.clock = BlockClock(time.perf_counter(), self.rate, self.block)
        self._thread = threading.Thread(target=self._run, args=(on_block,), name="client-audio", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self, on_block: BlockHandler) -> None:
        assert self.clock is not None
        index, period = 0, self.block / self.rate
        while not self._stop.is_set():
            delay = self.clock.t0 + (index + 1) * period - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            mic = self._take(self.block)
            out, notes = self.playback.read(self.block)
            if notes:  # reply audio in this block: the client gets it now
                pcm = np.clip(self._up.resample_chunk(out) * 32768.0, -32768, 32767).astype("<i2")
                if len(pcm):
                    self._send_audio(notes[0].turn, pcm.tobytes())
            on_block(Block(index, mic, self.clock.sample_time((index + 1) * self.block), tuple(notes),
                           self.clock.out_time(index), out))
            index += 1
