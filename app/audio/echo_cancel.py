"""Echo cancellation on the microphone path: a device wrapper that hands every microphone block through an
`EchoCanceller` engine, fed with exactly what the speaker played (`Block.out`), before the session (VAD, Smart
Turn, ASR) sees it.

The canceller works on 10 ms frames and the session on 512-sample blocks, so the cleaned signal runs one frame
(10 ms) behind the microphone; the blocks' capture times are shifted by that frame so every clock stays true.
A delay tracker estimates the speaker-to-microphone delay from the signals themselves (`echo_delay.py`) and passes
it to the canceller as a hint; `stats()` reports it, with the echo reduction, for the UI's diagnostics."""
from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass

import numpy as np

from app.audio.duplex import Block, BlockHandler, DuplexDevice, Mutable
from app.audio.echo_delay import DelayTracker
from engines.protocols import EchoCanceller

FAR_ACTIVE_RMS = 10 ** (-50 / 20)  # a far-end frame below -50 dBFS counts as silence (no echo to cancel)


@dataclass(frozen=True)
class EchoStats:
    delay_ms: float | None  # the estimated speaker-to-microphone delay, None until the agent has spoken
    reduction_db: float | None  # microphone energy removed while the speaker played, smoothed (None: not yet)
    frames: int  # 10 ms frames processed


class BlockEchoCanceller:
    """Blocks in, cleaned blocks out (same size, one frame later)."""

    def __init__(self, canceller: EchoCanceller, rate: int = 16000):
        self.canceller, self.rate = canceller, rate
        self.frame = canceller.frame_samples
        self.latency_s = self.frame / rate
        self._mic = np.zeros(0, np.float32)
        self._far = np.zeros(0, np.float32)
        self._out = np.zeros(self.frame, np.float32)  # the one-frame lag, primed with silence
        self.tracker = DelayTracker(rate)
        self._delay_hint: float | None = None
        self._energy_in = self._energy_out = 0.0
        self._frames = 0
        self._lock = threading.Lock()

    def process(self, block: Block) -> Block:
        far = block.out if block.out is not None else np.zeros(0, np.float32)
        self.tracker.add(far, block.mic)
        delay = self.tracker.delay_ms()
        if delay is not None and delay != self._delay_hint:
            self._delay_hint = delay
            self.canceller.set_delay_ms(int(round(delay)))
        self._far = np.concatenate([self._far, np.asarray(far, np.float32)])
        self._mic = np.concatenate([self._mic, np.asarray(block.mic, np.float32)])
        cleaned = []
        while len(self._mic) >= self.frame:
            far_active = False
            while len(self._far) >= self.frame:  # the speaker's frames go in before the microphone's
                frame, self._far = self._far[:self.frame], self._far[self.frame:]
                far_active = far_active or float(np.sqrt(np.mean(np.square(frame)))) > FAR_ACTIVE_RMS
                self.canceller.far(frame)
            mic, self._mic = self._mic[:self.frame], self._mic[self.frame:]
            out = self.canceller.near(mic)
            cleaned.append(out)
            self._measure(mic, out, far_active)
        self._out = np.concatenate([self._out, *cleaned])
        n = len(block.mic)
        mic, self._out = self._out[:n], self._out[n:]
        return dataclasses.replace(block, mic=mic, t_end=block.t_end - self.latency_s)

    def _measure(self, mic: np.ndarray, out: np.ndarray, far_active: bool) -> None:
        with self._lock:
            self._frames += 1
            if far_active:
                decay = 0.98  # ~0.5 s memory
                self._energy_in = decay * self._energy_in + float(np.mean(np.square(mic, dtype=np.float64)))
                self._energy_out = decay * self._energy_out + float(np.mean(np.square(out, dtype=np.float64)))

    def stats(self, settled: bool = False) -> EchoStats:
        """The figures now; `settled`: after the delay estimates already asked for are made (tests, benchmarks)."""
        if settled:
            self.tracker.wait()
        with self._lock:
            reduction = None
            if self._energy_in > 1e-10:
                reduction = 10 * math.log10(self._energy_in / max(self._energy_out, 1e-12))
            return EchoStats(self.tracker.delay_ms(), reduction, self._frames)


class EchoCancellingDevice:
    """A `DuplexDevice` whose microphone blocks come out echo-cancelled. Muting goes to the wrapped device; a
    restart is the wrapped device's own (the conversation keeps it as `Conversation.opened`)."""

    def __init__(self, device: DuplexDevice, canceller: EchoCanceller):
        self.device = device
        self.rate, self.block = device.rate, device.block
        self.processor = BlockEchoCanceller(canceller, device.rate)

    def start(self, on_block: BlockHandler) -> None:
        self.device.start(lambda block: on_block(self.processor.process(block)))

    def stop(self) -> None:
        self.device.stop()

    def stats(self, settled: bool = False) -> EchoStats:
        return self.processor.stats(settled)

    @property
    def muted(self) -> bool:
        return isinstance(self.device, Mutable) and self.device.muted

    @muted.setter
    def muted(self, value: bool) -> None:
        if isinstance(self.device, Mutable):
            self.device.muted = value


def with_echo_cancellation(device: DuplexDevice, audio_cfg) -> DuplexDevice:
    """The device as the audio settings want it: echo-cancelled unless cancellation is off or the user wears
    headphones (no speaker, no echo), noise-suppressed when asked; the device itself when neither applies."""
    cancel = audio_cfg.echo_cancellation and not audio_cfg.headphones
    if not cancel and not audio_cfg.noise_suppression:
        return device
    from engines.aec_webrtc import WebRtcEchoCanceller

    return EchoCancellingDevice(device, WebRtcEchoCanceller(noise_suppression=audio_cfg.noise_suppression,
                                                            echo_cancellation=cancel))
