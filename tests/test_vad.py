"""Silero VAD on real speech: it finds the speech of en_silero_test.wav where the energy says there is speech,
finds none in digital silence or low noise, and is a deterministic, resettable, stateful per-frame step."""
from __future__ import annotations

import time

import numpy as np
import pytest

from engines.audio_io import read_audio
from engines.protocols import Vad
from engines.vad_silero import FRAME_SAMPLES, SileroVad, speech_regions
from tests.conftest import SPEECH

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    return SileroVad.from_catalog(threads=1)


@pytest.fixture(scope="module")
def silero_test() -> np.ndarray:
    return read_audio(SPEECH / "en_silero_test.wav")


def frame_db(x: np.ndarray) -> np.ndarray:
    n = len(x) // FRAME_SAMPLES
    frames = x[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES).astype(np.float64)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


def test_implements_the_protocol(vad):
    assert isinstance(vad, Vad) and vad.frame_samples == 512


def test_speech_regions_follow_the_energy(vad, silero_test, capsys):
    vad.reset()
    started = time.perf_counter()
    probs = vad.probabilities(silero_test)
    per_frame_ms = (time.perf_counter() - started) * 1000 / len(probs)
    speech = probs > 0.5
    db = frame_db(silero_test)[: len(probs)]
    floor, loud = np.percentile(db, 10), np.percentile(db, 95)

    # The clip is 60 s of talk with many pauses of 0.3-2.2 s (manifest).
    assert 0.5 < speech.mean() < 0.9, speech.mean()
    regions = speech_regions(probs)
    assert 8 <= len(regions) <= 40, regions
    # Frames well above the noise floor are speech; frames near the floor are not.
    strong = db > floor + 0.5 * (loud - floor)
    assert speech[strong].mean() > 0.95
    assert speech[db < floor + 5].mean() < 0.15
    # Speech frames are much louder than non-speech frames.
    assert np.median(db[speech]) - np.median(db[~speech]) > 20
    with capsys.disabled():
        print(f"\n[vad] {len(regions)} regions, speech {speech.mean():.0%}, {per_frame_ms:.2f} ms per 32 ms frame")


@pytest.mark.parametrize("level_dbfs", [None, -60.0, -40.0])
def test_no_speech_in_silence_or_low_noise(vad, level_dbfs):
    seconds = 5
    if level_dbfs is None:
        x = np.zeros(seconds * 16000, np.float32)
    else:
        rng = np.random.default_rng(7)
        x = (rng.standard_normal(seconds * 16000) * 10 ** (level_dbfs / 20)).astype(np.float32)
    vad.reset()
    probs = vad.probabilities(x)
    assert probs.max() < 0.5
    assert speech_regions(probs) == []


def test_reset_makes_it_deterministic_and_state_matters(vad, silero_test):
    clip = silero_test[: 3 * 16000]
    vad.reset()
    first = vad.probabilities(clip)
    vad.reset()
    again = vad.probabilities(clip)
    assert np.array_equal(first, again)
    # Without a reset the recurrent state carries over, so the same audio scores differently.
    carried = vad.probabilities(clip)
    assert not np.array_equal(first, carried)


def test_frame_size_is_checked(vad):
    with pytest.raises(ValueError, match="512"):
        vad.probability(np.zeros(480, np.float32))


def test_speech_regions_bridges_short_gaps_and_drops_blips():
    probs = np.array([0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0], dtype=np.float32)
    regions = speech_regions(probs, min_silence_frames=3, min_speech_frames=2)
    assert len(regions) == 1  # the 2-frame gap is bridged; the 1-frame blip is dropped
    start, end = regions[0]
    assert start == pytest.approx(1 * 0.032) and end == pytest.approx(9 * 0.032)
