"""Reading and writing audio files. Any WAV a tester may bring (8/16/24/32-bit int, float, mono or multichannel,
8-48 kHz) becomes 16 kHz mono float32 through soundfile and the soxr resampler; anything unusable raises
AudioFormatError with one clear sentence."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from engines.protocols import SAMPLE_RATE

MAX_SECONDS = 3 * 3600  # refuse absurd inputs rather than exhausting memory


class AudioFormatError(ValueError):
    """An audio file cannot be read as audio."""


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples, rate_in, rate_out, quality="HQ").astype(np.float32, copy=False)


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The file as mono float32 at `sample_rate`; AudioFormatError if it is missing, empty or not audio."""
    p = Path(path)
    if not p.exists():
        raise AudioFormatError(f"{p}: no such file")
    if p.is_dir():
        raise AudioFormatError(f"{p}: is a folder, not an audio file")
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioFormatError(f"{p}: not a readable audio file ({_reason(exc)})") from None
    if info.frames <= 0:
        raise AudioFormatError(f"{p}: contains no audio samples")
    _check_not_truncated(p, info.extra_info)
    if not 4000 <= info.samplerate <= 192000:
        raise AudioFormatError(f"{p}: unsupported sample rate {info.samplerate} Hz")
    if info.frames / info.samplerate > MAX_SECONDS:
        raise AudioFormatError(f"{p}: longer than {MAX_SECONDS // 3600} hours")
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioFormatError(f"{p}: the audio data is damaged ({_reason(exc)})") from None
    if len(data) == 0:
        raise AudioFormatError(f"{p}: contains no audio samples")
    mono = data.mean(axis=1)
    if not np.isfinite(mono).all():
        bad = int((~np.isfinite(mono)).sum())
        raise AudioFormatError(f"{p}: {bad} samples are NaN or infinite")
    return resample(mono, rate, sample_rate)


def write_audio(path: str | Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Write float audio (mono [n] or multichannel [n, ch]) as 16-bit PCM WAV."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    sf.write(str(p), clipped, sample_rate, subtype="PCM_16")
    return p


def _check_not_truncated(p: Path, log: str) -> None:
    """libsndfile reads a WAV whose data chunk is cut short without complaint; its log says 'data : N (should
    be M)'. Fewer bytes than declared means a damaged file (0 and 0xFFFFFFFF placeholders from recorders that
    never patched the header mean the opposite and are fine)."""
    m = re.search(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", log, re.MULTILINE)
    if m and int(m[2]) < int(m[1]) < 0xFFFFFFF0:
        raise AudioFormatError(f"{p}: truncated (the header declares {m[1]} bytes of audio, the file holds {m[2]})")


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return text.split(": ", 1)[-1] if text.startswith("Error opening") else text
