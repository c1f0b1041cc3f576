"""Kokoro-82M int8 ONNX (24 kHz): the quality CPU voice. Text becomes phonemes through kokoro-onnx's espeak-ng
phonemizer (espeakng-loader's bundled library and data: offline), and phonemes run on our own onnxruntime
session (CPU provider, `threads` intra-op threads). kokoro-onnx's `Kokoro` class wants every voice in one npz
file; instead the 28 English style files (raw float32 [510, 1, 256] each, from the `kokoro-voices-en` cache
folder) are read straight into memory, one voice at a time, and nothing is written.

One `synthesize()` call speaks one segment: its phonemes are split into model-sized batches (510 phonemes;
a sentence is one batch) and each batch yields one chunk, with the model's ~0.3 s lead-in silence trimmed off
and a short pause kept after sentence and clause ends."""
from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import numpy as np

from engines.onnx_cpu import cpu_session
from engines.protocols import AudioChunk
from engines.tts_piper import DEFAULT_THREADS, has_words

SAMPLE_RATE = 24_000
STYLE_ROWS, STYLE_DIM = 510, 256  # one 256-d style vector per phoneme count
SENTENCE_PAUSE_S, CLAUSE_PAUSE_S, TAIL_S = 0.25, 0.1, 0.05


class UnknownVoice(ValueError):
    """A voice name that is not among the installed voice files."""


def voice_files(voices_dir: str | Path) -> dict[str, Path]:
    """Voice name -> style file for every `*.bin` in the folder, sorted by name."""
    folder = Path(voices_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"Kokoro voices folder not found: {folder}")
    found = {p.stem: p for p in sorted(folder.glob("*.bin"))}
    if not found:
        raise FileNotFoundError(f"no Kokoro voice files (*.bin) in {folder}")
    return found


def read_style(path: Path) -> np.ndarray:
    """One voice's style table, float32 [510, 1, 256]; ValueError if the file is not one."""
    data = np.fromfile(path, dtype="<f4")
    if data.size != STYLE_ROWS * STYLE_DIM or not np.isfinite(data).all():
        raise ValueError(f"{path}: not a Kokoro voice file (expected {STYLE_ROWS}x{STYLE_DIM} float32 values)")
    return data.reshape(STYLE_ROWS, 1, STYLE_DIM)


def check_voice(voice: str, names: list[str]) -> None:
    if voice not in names:
        raise UnknownVoice(f"unknown Kokoro voice {voice!r}; choose one of: {', '.join(names)}")


def voice_language(voice: str) -> str:
    """espeak language of a voice: British for b* voices (bf_emma, bm_george), American otherwise."""
    return "en-gb" if voice.startswith("b") else "en-us"


def check_speed(speed: float) -> float:
    if not 0.5 <= speed <= 2.0:
        raise ValueError(f"Kokoro speed must be between 0.5 and 2.0, got {speed}")
    return float(speed)


def finish_audio(audio: np.ndarray, phonemes: str) -> np.ndarray:
    """Trim the model's silent lead-in and tail, then keep the pause the final punctuation calls for."""
    from kokoro_onnx.chunker import pause_after
    from kokoro_onnx.trim import trim

    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if audio.size > 2048:  # trim() frames 2048 samples; anything shorter is left alone
        audio, _ = trim(audio)
    pause = max(pause_after(phonemes, SENTENCE_PAUSE_S, CLAUSE_PAUSE_S), TAIL_S)
    tail = np.zeros(int(pause * SAMPLE_RATE), dtype=np.float32)
    return np.clip(np.concatenate([audio, tail]), -1.0, 1.0)


class KokoroOnnxSynthesizer:
    """Kokoro-82M on onnxruntime: `synthesize(text)` yields float32 mono chunks at 24 kHz."""

    sample_rate: int = SAMPLE_RATE

    def __init__(self, model_path: str | Path, voices_dir: str | Path, voice: str = "af_heart",
                 speed: float = 1.0, threads: int = DEFAULT_THREADS, name: str = "kokoro-82m-int8"):
        from kokoro_onnx.session import embedded_vocab, input_dtypes
        from kokoro_onnx.tokenizer import Tokenizer

        model_path = Path(model_path)
        if not model_path.is_file():
            raise FileNotFoundError(f"Kokoro model not found: {model_path}")
        self._files = voice_files(voices_dir)
        self._styles: dict[str, np.ndarray] = {}
        self.speed = check_speed(speed)
        self.voice = ""
        self.set_voice(voice)
        self.session = cpu_session(model_path, threads, release_memory=True)
        self._dtypes = input_dtypes(self.session)
        self._tokens_input = "input_ids" if "input_ids" in self._dtypes else "tokens"
        self.tokenizer = Tokenizer(vocab=embedded_vocab(self.session))  # empty (none embedded): the default vocab
        self.name = name
        self.threads = threads

    @classmethod
    def from_catalog(cls, model_id: str = "kokoro-82m-int8", voices_id: str = "kokoro-voices-en",
                     voice: str = "af_heart", speed: float = 1.0,
                     threads: int = DEFAULT_THREADS) -> KokoroOnnxSynthesizer:
        """Load the catalog model and voices after `engines.store` has verified them (ModelError otherwise)."""
        from engines.store import ensure

        voices_dir = ensure(voices_id).directory
        return cls(ensure(model_id).file(), voices_dir, voice=voice, speed=speed, threads=threads, name=model_id)

    def fork(self) -> Self:
        """A twin for another conversation: the same model and voice files, its own voice choice."""
        return copy.copy(self)

    def voices(self) -> list[str]:
        """Every selectable voice name, sorted."""
        return list(self._files)

    def set_voice(self, voice: str) -> None:
        """Select a voice (its style file is read once and kept); UnknownVoice names the valid ones."""
        check_voice(voice, self.voices())
        if voice not in self._styles:
            self._styles[voice] = read_style(self._files[voice])
        self.voice = voice

    def synthesize(self, text: str) -> Iterator[AudioChunk]:
        """Speak one segment with the current voice; yields nothing for empty or punctuation-only text."""
        from kokoro_onnx.chunker import split_phonemes

        if not has_words(text):
            return
        phonemes = " ".join(self.tokenizer.phonemize(text, voice_language(self.voice)).split())
        style = self._styles[self.voice]
        for batch in split_phonemes(phonemes, STYLE_ROWS):
            tokens = self.tokenizer.tokenize(batch)
            if not tokens:
                continue
            yield AudioChunk(finish_audio(self._run(tokens, style), batch), SAMPLE_RATE)

    def _run(self, tokens: list[int], style: np.ndarray) -> np.ndarray:
        inputs = {
            self._tokens_input: np.array([[0, *tokens, 0]], dtype=self._dtypes[self._tokens_input]),
            "style": style[min(len(tokens), STYLE_ROWS) - 1].astype(self._dtypes["style"]),
            "speed": np.array([self.speed], dtype=self._dtypes["speed"]),
        }
        return np.asarray(self.session.run(None, inputs)[0]).reshape(-1)
