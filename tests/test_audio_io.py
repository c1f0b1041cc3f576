"""Audio I/O: every WAV flavour a tester may bring becomes 16 kHz mono float32 with the right duration and
content; damaged, empty and non-audio files raise AudioFormatError with one line that names the file."""
from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from engines.audio_io import AudioFormatError, read_audio, write_audio
from engines.protocols import SAMPLE_RATE

SUBTYPES = ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"]
RATES = [8000, 16000, 22050, 44100, 48000]
TONE_HZ = 440.0


def tone(rate: int, seconds: float, hz: float = TONE_HZ, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float64)


def dominant_hz(x: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def amplitude(x: np.ndarray) -> float:
    """Sine amplitude from the RMS of the middle (resampler edges excluded)."""
    mid = x[len(x) // 10: -len(x) // 10]
    return float(np.sqrt(np.mean(mid.astype(np.float64) ** 2)) * math.sqrt(2))


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("subtype", SUBTYPES)
def test_every_wav_flavour_becomes_16k_mono_float32(tmp_path, subtype, rate, channels):
    seconds = 1.25
    left = tone(rate, seconds)
    data = left if channels == 1 else np.stack([left, np.zeros_like(left)], axis=1)  # stereo: tone on the left
    path = tmp_path / f"{subtype}_{rate}_{channels}.wav"
    sf.write(str(path), data, rate, subtype=subtype)

    x = read_audio(path)

    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - seconds * SAMPLE_RATE) <= 2, len(x)
    assert abs(dominant_hz(x) - TONE_HZ) < 2.0  # the tone keeps its pitch through the resampler
    expected = 0.5 if channels == 1 else 0.25  # channels are averaged
    tolerance = 0.03 if subtype == "PCM_U8" else 0.01
    assert abs(amplitude(x) - expected) < tolerance, amplitude(x)


def test_resampling_filters_what_16k_cannot_hold(tmp_path):
    """A 12 kHz tone in a 48 kHz file is above the new Nyquist limit: it must vanish, not alias to 4 kHz."""
    path = tmp_path / "high.wav"
    sf.write(str(path), tone(48000, 1.0, hz=12000.0), 48000, subtype="PCM_16")
    x = read_audio(path)
    assert len(x) == SAMPLE_RATE
    assert amplitude(x) < 0.005


def test_multichannel_is_averaged(tmp_path):
    path = tmp_path / "quad.wav"
    data = np.stack([tone(16000, 0.5, amp=0.4)] * 2 + [np.zeros(8000)] * 2, axis=1)
    sf.write(str(path), data, 16000, subtype="FLOAT")
    assert abs(amplitude(read_audio(path)) - 0.2) < 0.005


def test_real_speech_survives_a_44k_stereo_round_trip(tmp_path):
    """Real speech written at 44.1 kHz stereo (24-bit) reads back as the same 16 kHz signal."""
    import soxr

    from tests.conftest import SPEECH

    original = read_audio(SPEECH / "en_LJ001-0002.wav")
    up = soxr.resample(original, SAMPLE_RATE, 44100)
    path = tmp_path / "speech44k.wav"
    sf.write(str(path), np.stack([up, up], axis=1), 44100, subtype="PCM_24")
    back = read_audio(path)
    assert abs(len(back) - len(original)) <= 2
    n = min(len(back), len(original))
    assert np.corrcoef(back[:n], original[:n])[0, 1] > 0.999


def test_write_then_read_round_trip(tmp_path):
    samples = tone(22050, 0.5, amp=0.3).astype(np.float32)
    samples[:10] = 3.0  # out of range: clipped, not wrapped
    path = write_audio(tmp_path / "sub" / "out.wav", samples, 22050)
    info = sf.info(str(path))
    assert (info.samplerate, info.subtype, info.channels) == (22050, "PCM_16", 1)
    back, rate = sf.read(str(path), dtype="float32")
    assert rate == 22050 and np.all(back[:10] > 0.99)
    assert np.allclose(back[10:], samples[10:], atol=1e-4)


# ---- everything that is not usable audio -----------------------------------------------------------------

def _wav_bytes(tmp_path) -> bytes:
    path = tmp_path / "good.wav"
    sf.write(str(path), tone(16000, 1.0), 16000, subtype="PCM_16")
    return path.read_bytes()


BAD_FILES = {
    "empty": (lambda good: b"", "not a readable audio file"),
    "riff_only": (lambda good: good[:12], "not a readable audio file"),
    "cut_in_header": (lambda good: good[:30], "not a readable audio file"),
    "header_only": (lambda good: good[:44], "no audio samples"),
    "truncated_data": (lambda good: good[: 44 + len(good) // 3], "truncated"),
    "text": (lambda good: b"this is a shopping list, not a recording\n" * 20, "not a readable audio file"),
    "random_bytes": (lambda good: np.random.default_rng(1).bytes(5000), "not a readable audio file"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_unusable_files_raise_one_clear_line(tmp_path, kind):
    make, phrase = BAD_FILES[kind]
    path = tmp_path / f"{kind}.wav"
    path.write_bytes(make(_wav_bytes(tmp_path)))
    with pytest.raises(AudioFormatError) as err:
        read_audio(path)
    message = str(err.value)
    assert phrase in message and str(path) in message
    assert "\n" not in message


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(AudioFormatError, match="no such file"):
        read_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioFormatError, match="is a folder"):
        read_audio(tmp_path)


def test_nan_samples_are_refused(tmp_path):
    samples = tone(16000, 0.5)
    samples[100] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(str(path), samples, 16000, subtype="FLOAT")
    with pytest.raises(AudioFormatError, match="NaN"):
        read_audio(path)


def test_absurd_sample_rate_is_refused(tmp_path):
    path = tmp_path / "slow.wav"
    sf.write(str(path), tone(2000, 1.0, hz=100.0), 2000, subtype="PCM_16")
    with pytest.raises(AudioFormatError, match="sample rate"):
        read_audio(path)


def test_inf_samples_are_refused_with_their_time(tmp_path):
    samples = tone(16000, 2.0)
    samples[24000] = np.inf
    path = tmp_path / "inf.wav"
    sf.write(str(path), samples, 16000, subtype="FLOAT")
    with pytest.raises(AudioFormatError, match=r"NaN or infinite samples \(the first at 1.50 s\)"):
        read_audio(path)


# ---- repairs: offset, over-range floats, unfinalised headers ----------------------------------------------------

def test_dc_offset_is_removed_and_a_negligible_one_left_alone(tmp_path):
    path = tmp_path / "dc.wav"
    sf.write(str(path), tone(16000, 1.0, amp=0.3) + 0.4, 16000, subtype="PCM_16")
    x = read_audio(path)
    assert abs(float(np.mean(x))) < 1e-4 and abs(amplitude(x) - 0.3) < 0.01
    sf.write(str(path), tone(16000, 1.0, amp=0.3) + 5e-4, 16000, subtype="FLOAT")
    assert float(np.mean(read_audio(path))) == pytest.approx(5e-4, abs=5e-5)  # below -60 dBFS: untouched


def test_float_above_full_scale_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "loud.wav"
    sf.write(str(path), tone(16000, 1.0, amp=4.0), 16000, subtype="FLOAT")
    x = read_audio(path)
    assert np.abs(x).max() == pytest.approx(1.0, abs=1e-6)
    assert np.allclose(x, tone(16000, 1.0, amp=1.0), atol=1e-4)  # the same sine, not a clipped one


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_a_header_whose_recorder_never_wrote_the_data_size_reads_to_the_end(tmp_path, subtype):
    path = tmp_path / "rec.wav"
    sf.write(str(path), np.stack([tone(16000, 1.0), tone(16000, 1.0)], axis=1), 16000, subtype=subtype)
    expected = read_audio(path)
    raw = bytearray(path.read_bytes())
    at = raw.find(b"data") + 4
    raw[at:at + 4] = bytes(4)  # data size 0, as a recorder writes it before it knows
    path.write_bytes(bytes(raw) + b"\x01")  # and a stray half sample at the end
    assert np.array_equal(read_audio(path), expected)
    path.write_bytes(bytes(raw[:at + 4]))  # the same header with nothing after it
    with pytest.raises(AudioFormatError, match="no audio samples"):
        read_audio(path)


def test_decoder_chatter_never_reaches_stderr(tmp_path, capfd):
    """libsndfile's MPEG decoder prints notes on fd 2 for bytes it half-recognises: the CLI's one error line must
    stay one line."""
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(1).bytes(20000))
    with pytest.raises(AudioFormatError, match="format not recognised"):
        read_audio(path)
    assert capfd.readouterr().err == ""


def test_memory_follows_the_16k_mono_result_not_the_file(tmp_path):
    """60 s of 48 kHz stereo float (23 MB decoded whole) is read in blocks: the peak of numpy allocations stays
    near the 3.8 MB 16 kHz mono result."""
    import tracemalloc

    path = tmp_path / "long.wav"
    sf.write(str(path), np.stack([tone(48000, 60.0)] * 2, axis=1).astype(np.float32), 48000, subtype="FLOAT")
    tracemalloc.start()
    try:
        x = read_audio(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(x) == 60 * SAMPLE_RATE
    assert peak < 8 * 2**20, peak / 2**20
