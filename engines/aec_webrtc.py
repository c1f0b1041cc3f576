"""Acoustic echo cancellation with WebRTC's audio processing module (AEC3, optional noise suppression and
high-pass filter), as the `livekit` package ships it (the `aec` extra; runs offline, no LiveKit server involved).
The module works on 10 ms int16 frames; this class converts from and to the float32 frames Cadence uses."""
from __future__ import annotations

import numpy as np

from engines.protocols import SAMPLE_RATE

FRAME = SAMPLE_RATE // 100  # 10 ms


class EchoCancellerUnavailable(RuntimeError):
    """The WebRTC module is not installed."""


def _to_int16(frame: np.ndarray) -> bytearray:
    return bytearray((np.clip(frame, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())


class WebRtcEchoCanceller:
    frame_samples = FRAME

    def __init__(self, noise_suppression: bool = False, high_pass_filter: bool = True,
                 echo_cancellation: bool = True):
        try:
            from livekit import rtc
        except ImportError:
            raise EchoCancellerUnavailable(
                "echo cancellation needs the `livekit` package: pip install 'cadence[aec]', "
                "or turn echo cancellation off (audio.echo_cancellation = false)") from None
        self._rtc = rtc
        self.echo_cancellation = echo_cancellation
        self._apm = rtc.AudioProcessingModule(echo_cancellation=echo_cancellation, noise_suppression=noise_suppression,
                                              high_pass_filter=high_pass_filter)
        self._delay_ms = 0

    def _frame(self, samples: np.ndarray):
        if len(samples) != FRAME:
            raise ValueError(f"echo canceller frames are {FRAME} samples, got {len(samples)}")
        return self._rtc.AudioFrame(_to_int16(samples), SAMPLE_RATE, 1, FRAME)

    def far(self, frame: np.ndarray) -> None:
        self._apm.process_reverse_stream(self._frame(frame))

    def near(self, frame: np.ndarray) -> np.ndarray:
        audio = self._frame(frame)
        if self.echo_cancellation:
            self._apm.set_stream_delay_ms(self._delay_ms)  # WebRTC wants the hint before every capture frame
        self._apm.process_stream(audio)
        return np.frombuffer(bytes(audio.data), dtype="<i2").astype(np.float32) / 32768.0

    def set_delay_ms(self, delay_ms: int) -> None:
        self._delay_ms = int(max(0, min(500, delay_ms)))
