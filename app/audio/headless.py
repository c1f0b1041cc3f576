"""The headless audio device: feeds an input signal at real-time pace through the same block callback a microphone
uses, plays the agent's output into a recording on the same clock (left = what the user said, right = what the
agent said), and can feed part of the agent's output back into the input to simulate a loudspeaker (echo)."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from app.audio.duplex import Block, BlockClock, BlockHandler
from app.audio.echo_path import SpeakerEcho
from app.audio.playback import PlaybackBuffer, PlaybackNote

InputSource = Callable[[int, int], np.ndarray | None]  # (start sample, n) -> samples, or None when over
OutputSink = Callable[[np.ndarray, list[PlaybackNote]], None]  # each block's speaker output and what it played


def array_source(samples: np.ndarray) -> InputSource:
    """An input that plays `samples` once, then reports the end."""
    samples = np.asarray(samples, dtype=np.float32)

    def read(start: int, n: int) -> np.ndarray | None:
        if start >= len(samples):
            return None
        chunk = samples[start:start + n]
        return chunk if len(chunk) == n else np.pad(chunk, (0, n - len(chunk)))

    return read


class HeadlessDuplex:
    """Runs the block callback on its own thread, one block per block-duration of wall time."""

    def __init__(self, source: InputSource, playback: PlaybackBuffer, rate: int = 16000, block: int = 512,
                 pace: float = 1.0, echo: SpeakerEcho | None = None, record: bool = True,
                 on_output: OutputSink | None = None):
        if playback.sample_rate != rate:
            raise ValueError("the playback buffer must run at the device rate")
        self.rate, self.block, self.pace = rate, block, pace
        self.source = source
        self.echo = echo  # the simulated speaker-to-microphone path, if any
        self.record = record  # keep the stereo recording (a long soak does not: it grows ~8 MB a minute)
        self.on_output = on_output  # where each block's speaker output goes besides the recording (a client)
        self.playback = playback
        self.clock: BlockClock | None = None
        self.input_over = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mic: list[np.ndarray] = []
        self._spk: list[np.ndarray] = []
        self._lock = threading.Lock()
        self.max_lateness_s = 0.0  # how far the callback thread fell behind real time (diagnostics)

    def start(self, on_block: BlockHandler) -> None:
        self.clock = BlockClock(time.perf_counter(), self.rate, self.block)
        self._thread = threading.Thread(target=self._run, args=(on_block,), name="headless-audio", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self, on_block: BlockHandler) -> None:
        assert self.clock is not None
        index = 0
        period = self.block / self.rate / self.pace
        while not self._stop.is_set():
            deadline = self.clock.t0 + (index + 1) * period
            delay = deadline - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                self.max_lateness_s = max(self.max_lateness_s, -delay)
            mic = self.source(index * self.block, self.block)
            if mic is None:
                self.input_over.set()
                mic = np.zeros(self.block, dtype=np.float32)
            out, notes = self.playback.read(self.block)
            if self.on_output is not None:
                self.on_output(out, notes)
            if self.record:
                with self._lock:
                    self._mic.append(mic)
                    self._spk.append(out)
            if self.echo is not None:
                mic = self.echo.add_to(mic)
                self.echo.play(out)
            on_block(Block(index, mic, self.clock.sample_time((index + 1) * self.block), tuple(notes),
                           self.clock.out_time(index), out))
            index += 1

    def recording(self) -> np.ndarray:
        """Stereo [n, 2] on one clock: left = what the user said (without any simulated echo), right = speaker
        output (one block later, as a real duplex stream plays it)."""
        with self._lock:
            mic = np.concatenate(self._mic) if self._mic else np.zeros(0, np.float32)
            spk = np.concatenate(self._spk) if self._spk else np.zeros(0, np.float32)
        spk = np.concatenate([np.zeros(self.block, np.float32), spk])[: len(mic)]
        return np.stack([mic, spk], axis=1)
