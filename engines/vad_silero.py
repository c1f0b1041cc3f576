"""Silero VAD (ONNX) on the CPU: speech probability for each 32 ms frame (512 samples at 16 kHz).

The model is recurrent: each call feeds the frame with the last 64 samples of the previous input prepended
(input [1, 576]) plus the state [2, 1, 128] the previous call returned. One call is one bounded step."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from engines.onnx_cpu import cpu_session
from engines.protocols import SAMPLE_RATE

FRAME_SAMPLES = 512
CONTEXT_SAMPLES = 64


class SileroVad:
    """Implements engines.protocols.Vad."""

    frame_samples = FRAME_SAMPLES

    def __init__(self, model_path: str | Path, threads: int = 1) -> None:
        self._session = cpu_session(model_path, threads)
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self.reset()

    @classmethod
    def from_catalog(cls, model_id: str = "silero-vad", **kw) -> SileroVad:
        from engines import store

        return cls(store.ensure(model_id).file(), **kw)

    def fork(self) -> SileroVad:
        """A twin for another conversation: the same ONNX session, its own recurrent state."""
        twin = copy.copy(self)
        twin.reset()
        return twin

    def reset(self) -> None:
        """Forget the recurrent state and the context (start of a new stream)."""
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, CONTEXT_SAMPLES), dtype=np.float32)

    def probability(self, frame: np.ndarray) -> float:
        """Speech probability (0-1) of one frame of exactly 512 float32 samples at 16 kHz."""
        frame = np.asarray(frame, dtype=np.float32).reshape(1, -1)
        if frame.shape[1] != FRAME_SAMPLES:
            raise ValueError(f"Silero VAD takes frames of {FRAME_SAMPLES} samples, got {frame.shape[1]}")
        x = np.concatenate([self._context, frame], axis=1)
        out, self._state = self._session.run(None, {"input": x, "state": self._state, "sr": self._sr})
        self._context = x[:, -CONTEXT_SAMPLES:]
        return float(out[0, 0])

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """Probabilities of every whole frame of a 16 kHz clip, continuing the current state."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        n = len(audio) // FRAME_SAMPLES
        return np.array([self.probability(audio[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES]) for i in range(n)],
                        dtype=np.float32)


def speech_regions(probs: np.ndarray, threshold: float = 0.5, min_silence_frames: int = 6,
                   min_speech_frames: int = 3) -> list[tuple[float, float]]:
    """(start_s, end_s) regions where the probability stays above `threshold`; gaps shorter than
    `min_silence_frames` are bridged and regions shorter than `min_speech_frames` dropped."""
    regions: list[list[int]] = []
    for i, p in enumerate(probs):
        if p < threshold:
            continue
        if regions and i - regions[-1][1] <= min_silence_frames:
            regions[-1][1] = i + 1
        else:
            regions.append([i, i + 1])
    sec = FRAME_SAMPLES / SAMPLE_RATE
    return [(a * sec, b * sec) for a, b in regions if b - a >= min_speech_frames]
