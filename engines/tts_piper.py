"""Piper TTS (piper-tts 1.8.0, VITS ONNX voices, 22.05 kHz for joe-medium): the fast CPU voice. One call to
`synthesize()` speaks one segment; Piper phonemizes it with its bundled espeak-ng and yields one chunk per
sentence. The onnxruntime session is ours (CPU provider, `threads` intra-op threads), so the thread budget is
explicit; `PiperVoice.load()` offers no session options."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from engines.onnx_cpu import cpu_session
from engines.protocols import AudioChunk

DEFAULT_THREADS = 2


def has_words(text: str) -> bool:
    """True when the text has something to pronounce (a letter or digit); punctuation alone yields no audio."""
    return any(ch.isalnum() for ch in text)


class PiperSynthesizer:
    """A Piper voice: `synthesize(text)` yields float32 mono chunks at `sample_rate`."""

    def __init__(self, model_path: str | Path, config_path: str | Path | None = None,
                 threads: int = DEFAULT_THREADS, name: str = "piper"):
        from piper.config import PiperConfig  # piper imports its espeak bridge; keep module import light
        from piper.voice import PiperVoice

        model_path = Path(model_path)
        config_path = Path(config_path) if config_path else Path(f"{model_path}.json")
        for p in (model_path, config_path):
            if not p.is_file():
                raise FileNotFoundError(f"Piper voice file not found: {p}")
        with open(config_path, encoding="utf-8") as fh:
            config = PiperConfig.from_dict(json.load(fh))
        self.session = cpu_session(model_path, threads, release_memory=True)
        self.piper_voice = PiperVoice(session=self.session, config=config)
        self.name = name
        self.sample_rate: int = int(config.sample_rate)
        self.threads = threads

    @classmethod
    def from_catalog(cls, model_id: str = "piper-joe-medium", threads: int = DEFAULT_THREADS) -> PiperSynthesizer:
        """Load a catalog Piper voice after `engines.store` has verified it (raises ModelError otherwise)."""
        from engines.store import ensure

        files = ensure(model_id)
        model = next(p for n, p in files.paths.items() if n.endswith(".onnx"))
        config = next(p for n, p in files.paths.items() if n.endswith(".onnx.json"))
        return cls(model, config, threads=threads, name=model_id)

    def synthesize(self, text: str) -> Iterator[AudioChunk]:
        """Speak one segment; yields nothing for empty or punctuation-only text."""
        if not has_words(text):
            return
        for chunk in self.piper_voice.synthesize(text.strip()):
            samples = np.clip(np.asarray(chunk.audio_float_array, dtype=np.float32).reshape(-1), -1.0, 1.0)
            if samples.size:
                yield AudioChunk(samples, self.sample_rate)
