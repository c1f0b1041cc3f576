"""The bad-input corpus (issue 7): every kind of file a tester may hand `cadence transcribe`, `cadence headless`
or the engines, built into a folder from the real speech fixtures (where the content matters) or from bytes (where
it does not). Each entry says what must happen to it: "ok" (read, resampled or mixed down, and transcribed to
`text` within `max_wer`; `text == ""` means no speech may be heard) or "refused" (one line naming the file that
contains `phrase`, exit code 2). An entry with speech is bounded by the 16 kHz fixture `clip` it was made from,
heard by the same recognizer on the same machine: its WER may exceed that clip's by `max_wer`, and by at least two
words (`tests.wer.clip_limit`), since Whisper's errors on a short clip differ by a word between CPU vendors.

`build(folder)` writes every file and returns {file name: Case}; `python -m tests.bad_inputs FOLDER` does the
same from a shell, to try the corpus by hand."""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from engines.audio_io import read_audio
from tests.conftest import SPEECH, speech_manifest

RATE = 16000
LONG_S = 600.0  # the "10 minutes long" entry
LONG_PAUSE_S = 1.0  # between the clips of the long entry


@dataclass(frozen=True)
class Case:
    name: str  # file name in the corpus folder (its extension is part of the test)
    expect: str  # "ok" or "refused"
    what: str  # one line: what the file is
    text: str = ""  # "ok": the reference transcript ("" = nothing may be recognised)
    max_wer: float = 0.1  # "ok": the WER it may add over the same speech read from the 16 kHz fixture `clip`
    phrase: str = ""  # "refused": a phrase of the one-line message
    clip: str = ""  # "ok" with speech: the fixture clip it was made from

    @property
    def ok(self) -> bool:
        return self.expect == "ok"


def reference(clip: str) -> str:
    return next(r["transcript"] for r in speech_manifest() if r["file"] == clip)


def speech(clip: str) -> np.ndarray:
    """A fixture clip as 16 kHz mono float64 (the fixtures are 16 kHz mono 16-bit)."""
    return read_audio(SPEECH / clip).astype(np.float64)


def long_speech(seconds: float = LONG_S) -> tuple[np.ndarray, str]:
    """Real speech for `seconds`: the authoritative clips in turn, `LONG_PAUSE_S` apart, over a -66 dBFS noise
    floor; returns (audio, reference transcript)."""
    clips = [r["file"] for r in speech_manifest() if r["authoritative"].startswith("yes")]
    pause = np.zeros(int(LONG_PAUSE_S * RATE))
    parts, words, total, i = [], [], 0, 0
    while total < seconds * RATE:
        clip = clips[i % len(clips)]
        parts += [speech(clip), pause]
        words.append(reference(clip))
        total += len(parts[-2]) + len(pause)
        i += 1
    audio = np.concatenate(parts)
    audio += np.random.default_rng(7).normal(0.0, 10 ** (-66 / 20), len(audio))
    return audio, " ".join(words)


# ---- the entries -------------------------------------------------------------------------------------------

QUILTER, LDC, LIBRI, GO = "en_mr_quilter.wav", "en_LDC93S1.wav", "en_librivox_0870.wav", "en_goforward.wav"


def _write(path: Path, data: np.ndarray, rate: int, subtype: str = "PCM_16", fmt: str | None = None) -> None:
    sf.write(str(path), data, rate, subtype=subtype, format=fmt)


def _at(clip: str, rate: int) -> np.ndarray:
    x = speech(clip)
    return x if rate == RATE else soxr.resample(x, RATE, rate, quality="HQ")


def _wav_bytes(clip: str = GO) -> bytes:
    import io

    buf = io.BytesIO()
    sf.write(buf, speech(clip), RATE, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def _flac_cut(path: Path) -> None:
    import io

    buf = io.BytesIO()
    sf.write(buf, speech(QUILTER), RATE, subtype="PCM_16", format="FLAC")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def _patched(size_field: int) -> Callable[[Path], None]:
    """A WAV whose data-chunk size field says `size_field` (recorders that never finalised the header)."""
    def make(path: Path) -> None:
        raw = bytearray(_wav_bytes())
        at = raw.find(b"data") + 4
        raw[at:at + 4] = size_field.to_bytes(4, "little")
        path.write_bytes(bytes(raw))
    return make


def _float_with(value: float) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        x = speech(QUILTER)
        x[RATE:RATE + 3] = value
        _write(path, x, RATE, "FLOAT")
    return make


def _ok(name: str, what: str, clip: str | None, make: Callable[[Path], None], max_wer: float = 0.1):
    return Case(name, "ok", what, reference(clip) if clip else "", max_wer, clip=clip or ""), make


def _refused(name: str, what: str, phrase: str, make: Callable[[Path], None]):
    return Case(name, "refused", what, phrase=phrase), make


def entries() -> list[tuple[Case, Callable[[Path], None]]]:
    q = speech(QUILTER)
    entries = [
        # sample formats (16 kHz mono)
        _ok("pcm_u8.wav", "8-bit unsigned PCM", QUILTER, lambda p: _write(p, q, RATE, "PCM_U8"), 0.15),
        _ok("pcm_24.wav", "24-bit PCM", QUILTER, lambda p: _write(p, q, RATE, "PCM_24")),
        _ok("pcm_32.wav", "32-bit integer PCM", QUILTER, lambda p: _write(p, q, RATE, "PCM_32")),
        _ok("float32.wav", "32-bit float", QUILTER, lambda p: _write(p, q, RATE, "FLOAT")),
        _ok("float64.wav", "64-bit float", QUILTER, lambda p: _write(p, q, RATE, "DOUBLE")),
        _ok("ulaw_8k.wav", "G.711 mu-law at 8 kHz (telephone)", LDC,
            lambda p: _write(p, _at(LDC, 8000), 8000, "ULAW"), 0.25),
        # sample rates (16-bit mono)
        *[_ok(f"rate_{r}.wav", f"16-bit at {r} Hz", LDC, lambda p, r=r: _write(p, _at(LDC, r), r),
              0.25 if r == 8000 else 0.1) for r in (8000, 22050, 44100, 48000)],
        # channels
        _ok("stereo_44k.wav", "stereo at 44.1 kHz, the same speech on both channels", LIBRI,
            lambda p: _write(p, np.stack([_at(LIBRI, 44100)] * 2, axis=1), 44100)),
        _ok("stereo_left_only.wav", "stereo, speech on the left, digital silence on the right", LIBRI,
            lambda p: _write(p, np.stack([speech(LIBRI), np.zeros_like(speech(LIBRI))], axis=1), RATE)),
        # levels
        _ok("clipped.wav", "speech 20 dB too loud, hard-clipped at full scale", QUILTER,
            lambda p: _write(p, np.clip(q * 10, -1, 1), RATE), 0.25),
        _ok("dc_offset.wav", "speech on a +0.25 DC offset", LIBRI,
            lambda p: _write(p, speech(LIBRI) + 0.25, RATE)),
        _ok("float_overrange.wav", "float speech peaking far above 1.0 (not clipped)", QUILTER,
            lambda p: _write(p, q * 12, RATE, "FLOAT")),
        _ok("quiet.wav", "speech peaking at -40 dBFS", QUILTER, lambda p: _write(p, q / np.abs(q).max() * 0.01, RATE)),
        _ok("digital_silence.wav", "5 s of digital silence", None, lambda p: _write(p, np.zeros(5 * RATE), RATE)),
        _ok("dc_only.wav", "5 s of a constant DC level (silence once the offset is removed)", None,
            lambda p: _write(p, np.full(5 * RATE, 0.3), RATE)),
        _ok("tiny.wav", "20 samples", None, lambda p: _write(p, q[RATE:RATE + 20], RATE)),
        # containers and names
        _ok("flac_named.wav", "FLAC with a .wav name", QUILTER, lambda p: _write(p, q, RATE, "PCM_16", "FLAC")),
        _ok("ogg_named.wav", "Ogg Vorbis with a .wav name", QUILTER, lambda p: _write(p, q, RATE, "VORBIS", "OGG")),
        _ok("wav_named.mp3", "a WAV with an .mp3 name", QUILTER, lambda p: _write(p, q, RATE, "PCM_16", "WAV")),
        _ok("wav_named.txt", "a WAV with a .txt name", QUILTER, lambda p: _write(p, q, RATE, "PCM_16", "WAV")),
        _ok("unfinalised.wav", "data-chunk size 0: a recorder that never patched the header", GO, _patched(0)),
        _ok("streamed_header.wav", "data-chunk size 0xFFFFFFFF (a streamed WAV)", GO, _patched(0xFFFFFFFF)),
        # unusable
        _refused("empty.wav", "0 bytes", "not a readable audio file", lambda p: p.write_bytes(b"")),
        _refused("riff_only.wav", "the first 12 bytes of a WAV", "not a readable audio file",
                 lambda p: p.write_bytes(_wav_bytes()[:12])),
        _refused("header_only.wav", "a 44-byte WAV header, no samples", "no audio samples",
                 lambda p: p.write_bytes(_wav_bytes()[:44])),
        _refused("truncated.wav", "a WAV cut to a third of its declared data", "truncated",
                 lambda p: p.write_bytes(_wav_bytes()[: 44 + len(_wav_bytes()) // 3])),
        _refused("flac_truncated.wav", "a FLAC cut in half (a cut Ogg or MP3 reads as far as it goes)", "damaged",
                 _flac_cut),
        _refused("text.wav", "a text file with a .wav name", "not a readable audio file",
                 lambda p: p.write_text("shopping list: eggs, milk, a better microphone\n" * 30)),
        _refused("random.wav", "random bytes", "not a readable audio file",
                 lambda p: p.write_bytes(np.random.default_rng(1).bytes(20000))),
        _refused("headerless.wav", "raw 16-bit samples, no header", "not a readable audio file",
                 lambda p: p.write_bytes((speech(GO) * 32767).astype("<i2").tobytes())),
        _refused("rate_2k.wav", "16-bit at 2 kHz", "unsupported sample rate",
                 lambda p: _write(p, soxr.resample(speech(GO), RATE, 2000), 2000)),
        _refused("float_nan.wav", "float speech with NaN samples", "NaN or infinite", _float_with(np.nan)),
        _refused("float_inf.wav", "float speech with +inf samples", "NaN or infinite", _float_with(np.inf)),
    ]
    return entries


LONG = "ten_minutes.wav"


def write_long(path: Path) -> Case:
    """The 10-minute entry: real speech as 48 kHz stereo 16-bit (115 MB), so that a reader that decoded it whole
    as float would need 230 MB more and show it in its peak memory."""
    audio, text = long_speech()
    up = soxr.resample(audio, RATE, 48000, quality="HQ")
    _write(path, np.stack([up, up], axis=1), 48000)
    return Case(path.name, "ok", f"{len(audio) / RATE:.0f} s of real speech, 48 kHz stereo 16-bit", text, 0.1)


def build(folder: Path, long: bool = True) -> dict[str, Case]:
    """Write the corpus into `folder` (created); with `long`, also the 10-minute entry."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cases = {}
    for case, make in entries():
        make(folder / case.name)
        cases[case.name] = case
    if long:
        cases[LONG] = write_long(folder / LONG)
    return cases


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bad-inputs")
    for c in build(out).values():
        print(f"{c.name:22} {c.expect:8} {c.what}")
