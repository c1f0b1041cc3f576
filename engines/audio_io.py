"""Reading and writing audio files. Any file a tester may bring (WAV 8/16/24/32-bit int, float, mu-law; FLAC, Ogg
or MP3 whatever its name; mono or multichannel; 8-48 kHz) becomes 16 kHz mono float32 through soundfile and the
soxr resampler. It is read in blocks, so memory follows the 16 kHz mono result (64 KB per second of audio), not the
file's format. A DC offset is removed and float audio peaking above full scale is scaled down (not clipped); a WAV
whose recorder never wrote the data size is read to its end. Anything unusable (empty, header only, truncated, not
audio, NaN or infinite samples) raises AudioFormatError with one clear line that names the file."""
from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from engines.protocols import SAMPLE_RATE

MAX_SECONDS = 3 * 3600  # refuse absurd inputs rather than exhausting memory (3 h = 690 MB at 16 kHz mono)
BLOCK = 1 << 16  # frames decoded at a time
DC_LIMIT = 1e-3  # a smaller offset (-60 dBFS) is harmless and left alone
_BYTES_PER_FRAME = {"PCM_U8": 1, "PCM_S8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8,
                    "ULAW": 1, "ALAW": 1}


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
    with _quiet_stderr():  # libsndfile's MPEG decoder prints notes on fd 2 for files it half-recognises
        try:
            info = sf.info(str(p))
        except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
            raise AudioFormatError(f"{p}: not a readable audio file ({_reason(exc)})") from None
        source: str | _PatchedWav = str(p)
        try:
            if info.frames <= 0:
                source = _unfinalised_wav(p, info)
                info = sf.info(source)
                source.seek(0)
            _check_not_truncated(p, info.extra_info)
            if not 4000 <= info.samplerate <= 192000:
                raise AudioFormatError(f"{p}: unsupported sample rate {info.samplerate} Hz")
            if info.frames / info.samplerate > MAX_SECONDS:
                raise AudioFormatError(f"{p}: longer than {MAX_SECONDS // 3600} hours")
            with sf.SoundFile(source) as f:
                mono = _decode(f, p, sample_rate)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioFormatError(f"{p}: the audio data is damaged ({_reason(exc)})") from None
        finally:
            if isinstance(source, _PatchedWav):
                source.close()
    if len(mono) == 0:
        raise AudioFormatError(f"{p}: contains no audio samples")
    offset = float(np.mean(mono, dtype=np.float64))
    if abs(offset) > DC_LIMIT:  # a DC offset hides the pauses from energy-based endpointing
        mono -= np.float32(offset)
    top = float(np.max(np.abs(mono)))
    if top > 1.0:  # float files may exceed full scale: keep the waveform, scale it into range
        mono /= np.float32(top)
    return mono


def _decode(f: sf.SoundFile, p: Path, rate_out: int) -> np.ndarray:
    """Block by block: channels averaged, every sample checked, resampled as a stream into one 16 kHz array."""
    rate_in = f.samplerate
    out = np.empty(int(np.ceil(max(f.frames, 0) * rate_out / rate_in)) + 64, np.float32)
    stream = soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality="HQ") if rate_in != rate_out \
        else None
    n = done = 0
    while True:
        block = f.read(BLOCK, dtype="float32", always_2d=True)
        last = len(block) < BLOCK
        mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1)
        bad = ~np.isfinite(mono)
        if bad.any():
            at = (done + int(np.argmax(bad))) / rate_in
            raise AudioFormatError(f"{p}: contains NaN or infinite samples (the first at {at:.2f} s)")
        chunk = stream.resample_chunk(mono, last=last) if stream is not None else mono
        if n + len(chunk) > len(out):  # a compressed file's frame count is an estimate
            out = np.concatenate([out[:n], np.empty(max(len(out) // 2, len(chunk)), np.float32)])
        out[n:n + len(chunk)] = chunk
        n += len(chunk)
        done += len(block)
        if last:
            return out[:n]


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


class _PatchedWav(io.RawIOBase):
    """A WAV file seen through a corrected header (same length): the header bytes come from memory, the rest
    from the file, so nothing is copied."""

    def __init__(self, path: Path, header: bytes):
        self._file, self._head, self._pos = open(path, "rb"), header, 0
        self._size = os.path.getsize(path)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = max(0, offset + (0, self._pos, self._size)[whence])
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos < len(self._head):
            got = self._head[self._pos:self._pos + len(view)]
            view[:len(got)] = got
        else:
            self._file.seek(self._pos)
            got = self._file.read(len(view))
            view[:len(got)] = got
        self._pos += len(got)
        return len(got)

    def close(self) -> None:
        self._file.close()
        super().close()


def _unfinalised_wav(p: Path, info) -> _PatchedWav:
    """A WAV whose data chunk declares 0 bytes although samples follow (a recorder stopped before it patched the
    header): the same file with the sizes the file actually holds. AudioFormatError when there is nothing to
    read."""
    width = _BYTES_PER_FRAME.get(info.subtype, 0) * info.channels
    if info.format in ("WAV", "WAVEX") and width and re.search(r"^data\s*:\s*0\s*$", info.extra_info, re.M):
        with open(p, "rb") as fh:
            head = bytearray(fh.read(1 << 16))
        pos, size = 12, os.path.getsize(p)
        while pos + 8 <= len(head) and head[pos:pos + 4] != b"data":
            pos += 8 + int.from_bytes(head[pos + 4:pos + 8], "little") + (head[pos + 4] & 1)
        data = (size - pos - 8) // width * width
        if pos + 8 <= len(head) and data > 0:
            head[pos + 4:pos + 8] = data.to_bytes(4, "little")
            head[4:8] = min(size - 8, 0xFFFFFFFF).to_bytes(4, "little")
            return _PatchedWav(p, bytes(head[:pos + 8]))
    raise AudioFormatError(f"{p}: contains no audio samples")


@contextlib.contextmanager
def _quiet_stderr():
    """File descriptor 2 points at /dev/null for the duration (C libraries' notes would add lines to the CLI's one
    line of error); Python's own sys.stderr is untouched."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    text = text.split(": ", 1)[-1] if text.startswith("Error opening") else text
    if "does not exist" in text or "not a regular file" in text:  # libsndfile's words for bytes it cannot place
        return "format not recognised"
    return text
