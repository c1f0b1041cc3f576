"""Kokoro-82M on torch through the `kokoro` package (the `kokoro` extra, for GPU users with the float `.pth`
from the hub): `KModel` holds the weights, `KPipeline.infer` runs one phoneme batch. Same voices, sample rate
and chunking as the ONNX engine.

Offline, the package would reach for the network twice, and both are avoided here: `KModel` downloads
`config.json` unless given one (we pass a `config.json` found beside the `.pth`, else the identical v1.0 config
that kokoro-onnx ships), and voices are loaded from our own style files instead of `hf_hub_download`.
misaki's English G2P (`KPipeline(lang_code="a")`) needs the spaCy model `en_core_web_sm`, which it downloads from
GitHub when missing; with `g2p="auto"` it is used only when installed, otherwise phonemes come from misaki's
espeak-ng fallback (offline, the same phoneme set, somewhat less accurate)."""
from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, Self

from engines.protocols import AudioChunk
from engines.tts_kokoro_onnx import (
    SAMPLE_RATE,
    STYLE_ROWS,
    check_speed,
    check_voice,
    finish_audio,
    read_style,
    voice_files,
    voice_language,
)
from engines.tts_piper import has_words

REPO_ID = "hexgrad/Kokoro-82M"  # only names the architecture for `kokoro`; nothing is downloaded
SPACY_MODEL = "en_core_web_sm"
G2P_MODES = ("auto", "misaki", "espeak")


class _Token(NamedTuple):
    text: str  # misaki's espeak fallback phonemizes anything with a `.text`


def misaki_available() -> bool:
    """True when misaki's English G2P can run offline (its spaCy model is installed)."""
    try:
        importlib.metadata.distribution(SPACY_MODEL)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def model_config(model_path: Path, config_path: str | Path | None = None) -> dict[str, Any]:
    """The model's config: `config_path`, else `config.json` beside the weights, else kokoro-onnx's v1.0 copy."""
    candidates = [Path(config_path)] if config_path else [model_path.with_name("config.json")]
    if not config_path:
        spec = importlib.util.find_spec("kokoro_onnx")
        if spec and spec.submodule_search_locations:
            candidates.append(Path(list(spec.submodule_search_locations)[0]) / "config.json")
    for path in candidates:
        if path.is_file():
            with open(path, encoding="utf-8") as fh:
                return json.load(fh)
    raise FileNotFoundError(f"no Kokoro config.json for {model_path} (looked at {', '.join(map(str, candidates))})")


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class KokoroTorchSynthesizer:
    """Kokoro-82M on torch: `synthesize(text)` yields float32 mono chunks at 24 kHz."""

    sample_rate: int = SAMPLE_RATE

    def __init__(self, model_path: str | Path, voices_dir: str | Path, voice: str = "af_heart",
                 speed: float = 1.0, device: str | None = None, config_path: str | Path | None = None,
                 g2p: str = "auto", name: str = "kokoro-82m-pth"):
        try:
            import torch
            from kokoro import KModel
        except ImportError as exc:
            raise ImportError(f"the torch Kokoro engine needs the `kokoro` extra ({exc.name} is missing): "
                              "pip install torch==2.13.0 'kokoro==0.9.4'") from None
        if g2p not in G2P_MODES:
            raise ValueError(f"g2p must be one of {', '.join(G2P_MODES)}, got {g2p!r}")
        if g2p == "misaki" and not misaki_available():
            raise FileNotFoundError(f"misaki's English G2P needs the spaCy model {SPACY_MODEL}, which is not "
                                    f"installed (python -m spacy download {SPACY_MODEL}; needs internet)")
        model_path = Path(model_path)
        if not model_path.is_file():
            raise FileNotFoundError(f"Kokoro weights not found: {model_path}")
        self._files = voice_files(voices_dir)
        self._styles: dict[str, Any] = {}
        self.speed = check_speed(speed)
        self.voice = ""
        self.set_voice(voice)
        self.g2p = "misaki" if g2p == "misaki" or (g2p == "auto" and misaki_available()) else "espeak"
        self._phonemizers: dict[str, Callable[[str], list[str]]] = {}
        self.device = device or default_device()
        self.asynchronous = str(self.device).startswith("cuda")  # see DeviceSynchronized
        config = model_config(model_path, config_path)
        self.model = KModel(repo_id=REPO_ID, config=config, model=str(model_path)).to(self.device).eval()
        self._torch = torch
        self.name = name

    @classmethod
    def from_catalog(cls, model_id: str = "kokoro-82m-pth", voices_id: str = "kokoro-voices-en",
                     model_path: str | Path | None = None, voice: str = "af_heart", speed: float = 1.0,
                     device: str | None = None) -> KokoroTorchSynthesizer:
        """The hub weights (or `model_path`, e.g. config `models.tts_path`) with the verified catalog voices."""
        from engines.store import ensure

        weights = Path(model_path) if model_path else ensure(model_id).file()
        return cls(weights, ensure(voices_id).directory, voice=voice, speed=speed, device=device, name=model_id)

    def fork(self) -> Self:
        """A twin for another conversation: the same model and voice files, its own voice choice."""
        return copy.copy(self)

    def voices(self) -> list[str]:
        return list(self._files)

    def synchronize(self) -> None:
        """Wait for this engine's GPU work (a no-op on the CPU)."""
        if self.asynchronous:
            self._torch.cuda.synchronize(self.device)

    def set_voice(self, voice: str) -> None:
        """Select a voice; UnknownVoice names the valid ones."""
        import torch

        check_voice(voice, self.voices())
        if voice not in self._styles:
            self._styles[voice] = torch.from_numpy(read_style(self._files[voice]).copy())
        self.voice = voice

    def synthesize(self, text: str) -> Iterator[AudioChunk]:
        """Speak one segment with the current voice; yields nothing for empty or punctuation-only text."""
        from kokoro import KPipeline

        if not has_words(text):
            return
        style = self._styles[self.voice]
        for phonemes in self._phonemes(text.strip()):
            with self._torch.inference_mode():
                output = KPipeline.infer(self.model, phonemes, style, self.speed)
            audio = output.audio.detach().float().cpu().numpy()
            yield AudioChunk(finish_audio(audio, phonemes), SAMPLE_RATE)

    def _phonemes(self, text: str) -> list[str]:
        lang = voice_language(self.voice)
        if lang not in self._phonemizers:
            self._phonemizers[lang] = self._make_phonemizer(lang)
        return [p for p in self._phonemizers[lang](text) if p.strip()]

    def _make_phonemizer(self, lang: str) -> Callable[[str], list[str]]:
        """text -> phoneme batches of at most 510, by misaki (KPipeline without a model) or espeak-ng."""
        from kokoro import KPipeline

        if self.g2p == "misaki":
            pipeline = KPipeline(lang_code=lang, repo_id=REPO_ID, model=False)
            return lambda text: [result.phonemes for result in pipeline(text)]
        from kokoro_onnx.chunker import split_phonemes
        from misaki.espeak import EspeakFallback

        fallback = EspeakFallback(british=lang == "en-gb")
        logging.getLogger("phonemizer").setLevel(logging.ERROR)  # "words count mismatch" on every segment
        return lambda text: split_phonemes(fallback(_Token(text))[0] or "", STYLE_ROWS)
