"""Smart Turn v3.2 (ONNX, CPU): the probability that the user's turn is complete, from the audio of the
whole current turn. As in pipecat, the model sees the last 8 s (left-padded with zeros) as Whisper log-mel
features [1, 80, 800]; its output is already a probability (> 0.5 = complete).

The features come from pipecat's numpy Whisper feature extractor. That module is loaded from its file, so
pipecat's package `__init__` (loguru banner, asyncio patch, ~0.2 s) never runs."""
from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

from engines.onnx_cpu import cpu_session
from engines.protocols import SAMPLE_RATE

WINDOW_SAMPLES = 8 * SAMPLE_RATE
_FEATURES_FILE = "audio/turn/smart_turn/_whisper_features.py"
_features_module: ModuleType | None = None


def _feature_function() -> Callable[..., np.ndarray]:
    """pipecat's `compute_whisper_log_mel_features`, imported without importing the pipecat package."""
    global _features_module
    if _features_module is None:
        from engines.store import package_dir

        root = package_dir("pipecat")
        path = root / _FEATURES_FILE if root else None
        if path is None or not path.is_file():
            raise ImportError("Smart Turn needs pipecat-ai's Whisper feature extractor: pip install pipecat-ai")
        spec = importlib.util.spec_from_file_location("cadence_smart_turn_features", path)
        assert spec is not None and spec.loader is not None, "a .py file always gets a spec with a loader"
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _features_module = module
    return _features_module.compute_whisper_log_mel_features


def last_window(turn_audio: np.ndarray) -> np.ndarray:
    """The last 8 s of the turn, left-padded with zeros to exactly 8 s."""
    audio = np.asarray(turn_audio, dtype=np.float32).reshape(-1)[-WINDOW_SAMPLES:]
    return np.pad(audio, (WINDOW_SAMPLES - len(audio), 0))


class SmartTurn:
    """Implements engines.protocols.TurnDetector."""

    def __init__(self, model_path: str | Path, threads: int = 1) -> None:
        self._session = cpu_session(model_path, threads)
        self._features = _feature_function()

    @classmethod
    def from_catalog(cls, model_id: str = "smart-turn-v3.2", **kw) -> SmartTurn:
        from engines import store

        return cls(store.ensure(model_id).file(), **kw)

    def features(self, turn_audio: np.ndarray) -> np.ndarray:
        """Model input [1, 80, 800] for the turn's audio (16 kHz float32)."""
        return self._features(last_window(turn_audio), do_normalize=True)[None].astype(np.float32)

    def probability_complete(self, turn_audio: np.ndarray) -> float:
        """P(turn complete) for the whole current turn; 0.0 for an empty turn."""
        if np.asarray(turn_audio).size == 0:
            return 0.0
        (out,) = self._session.run(None, {"input_features": self.features(turn_audio)})
        return float(out[0, 0])
