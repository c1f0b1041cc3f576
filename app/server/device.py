"""A Realtime client's microphone and speaker for a session: `ClientAudio` holds the audio the client appended
(the microphone) and sends the reply audio back, through the paced block device headless mode uses
(`HeadlessDuplex`, with `ClientAudio.read` as its input and `ClientAudio.speaker` as its output).

The block clock runs on the server at real-time pace, as a sound card's does: every 32 ms it takes the next 512
samples the client sent (silence when none has arrived: a client that stops sending has a silent microphone) and
the next 512 samples of reply audio, which go to the client at once. So what the session counts as played is what
the client has been sent, and a barge-in stops the audio within a block. Input arrives as 24 kHz pcm16 (resampled
to the session's 16 kHz with soxr's streaming resampler); output leaves at 24 kHz."""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

import numpy as np
import soxr

from app.audio.headless import HeadlessDuplex
from app.audio.playback import PlaybackBuffer, PlaybackNote

CLIENT_RATE = 24_000


class InputOverflow(ValueError):
    """The client sent more audio than the buffer holds (it sends faster than real time for too long)."""


class ClientAudio:
    """The client's appended audio, read by the block clock; reply audio sent to `send_audio(turn, pcm16 24 kHz)`."""

    def __init__(self, send_audio: Callable[[int, bytes], None], rate: int = 16000, max_buffer_s: float = 30.0):
        self.rate = rate
        self._send_audio = send_audio
        self._max_samples = int(max_buffer_s * rate)
        self._incoming: deque[np.ndarray] = deque()
        self._queued = 0
        self._lock = threading.Lock()
        self._down = soxr.ResampleStream(CLIENT_RATE, rate, 1, dtype="float32", quality="HQ")
        self._up = soxr.ResampleStream(rate, CLIENT_RATE, 1, dtype="float32", quality="HQ")
        self.received_s = 0.0  # client audio accepted so far (seconds)

    def device(self, playback: PlaybackBuffer, block: int = 512) -> HeadlessDuplex:
        """The session's device: this audio as its microphone and speaker, on a real-time block clock."""
        return HeadlessDuplex(self.read, playback, self.rate, block, record=False, on_output=self.speaker)

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

    def read(self, _start: int, n: int) -> np.ndarray:
        """The next `n` samples the client sent, silence where it has sent nothing yet (the microphone never ends)."""
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

    # ---- to the client -----------------------------------------------------------------------------------
    def speaker(self, out: np.ndarray, notes: list[PlaybackNote]) -> None:
        """A block of speaker output: sent to the client when it holds reply audio."""
        if not notes:
            return
        pcm = np.clip(self._up.resample_chunk(out) * 32768.0, -32768, 32767).astype("<i2")
        if len(pcm):
            self._send_audio(notes[0].turn, pcm.tobytes())
