"""The torch Kokoro engine's plumbing, with a RANDOMLY INITIALISED model: the real float weights
(hexgrad/Kokoro-82M kokoro-v1_0.pth) are not available offline, so a KModel built from the v1.0 config with random
weights is saved to a .pth in the real format (one state dict per submodule) and loaded back through the engine.
The audio is noise; these tests check loading, voices, G2P, chunk format and errors, never speech quality (the
ONNX Kokoro tests cover that). Skipped unless the `kokoro` extra is installed (torch + kokoro 0.9.4)."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch Kokoro engine needs the `kokoro` extra (torch is missing)")
kokoro = pytest.importorskip("kokoro", reason="the torch Kokoro engine needs the `kokoro` extra (kokoro 0.9.4)")

from app.bench.kokoro_random import random_kokoro_pth  # noqa: E402
from engines.protocols import AudioChunk, Synthesizer  # noqa: E402
from engines.store import ensure  # noqa: E402
from engines.tts_kokoro_onnx import UnknownVoice  # noqa: E402
from engines.tts_kokoro_torch import KokoroTorchSynthesizer, misaki_available, model_config  # noqa: E402


@pytest.fixture(scope="module")
def random_pth(tmp_path_factory):
    """A random-weight Kokoro-82M saved like the hub's .pth (no config.json beside it: the bundled one is used);
    durations near one frame per phoneme (the duration head's bias -8) keep the noise short and the test fast."""
    return random_kokoro_pth(tmp_path_factory.mktemp("kokoro-random"), frames_per_token=50 / (1 + math.exp(8.0)))


@pytest.fixture(scope="module")
def tts(random_pth):
    return KokoroTorchSynthesizer(random_pth, ensure("kokoro-voices-en").directory, voice="af_heart", device="cpu")


def test_config_comes_from_beside_the_weights_or_the_bundled_copy(tmp_path):
    bundled = model_config(tmp_path / "w.pth")
    assert bundled["n_token"] == 178 and bundled["istftnet"]["upsample_rates"] == [10, 6]
    assert len(bundled["vocab"]) > 100
    (tmp_path / "config.json").write_text('{"n_token": 7, "vocab": {}}')
    assert model_config(tmp_path / "w.pth")["n_token"] == 7
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        model_config(tmp_path / "w.pth", tmp_path / "nowhere.json")


@pytest.mark.slow
def test_weights_are_loaded_from_the_file(tts, random_pth):
    saved = torch.load(random_pth, weights_only=True)
    loaded = tts.model.decoder.state_dict()
    assert all(torch.equal(saved["decoder"][k], loaded[k].cpu()) for k in saved["decoder"])
    assert float(tts.model.predictor.duration_proj.linear_layer.bias.detach().mean()) == pytest.approx(-8.0)
    assert tts.device == "cpu" and next(tts.model.parameters()).device.type == "cpu"
    assert tts.asynchronous is False  # on the CPU the scheduler gets no device barrier from it


@pytest.mark.slow
def test_chunks_follow_the_protocol(tts):
    print("\nplumbing only: random weights, the audio is noise")
    assert isinstance(tts, Synthesizer) and tts.sample_rate == 24_000
    chunks = list(tts.synthesize("Hello, Doctor Smith! What time is it?"))
    assert chunks
    for c in chunks:
        assert isinstance(c, AudioChunk) and c.sample_rate == 24_000
        assert c.samples.dtype == np.float32 and c.samples.ndim == 1 and c.samples.size > 0
        assert np.isfinite(c.samples).all() and float(np.abs(c.samples).max()) <= 1.0


@pytest.mark.slow
def test_g2p_runs_offline(tts):
    expected = "misaki" if misaki_available() else "espeak"  # misaki's English G2P needs spaCy's en_core_web_sm
    assert tts.g2p == expected
    phonemes = tts._phonemes("Forty two people ordered pizza.")
    assert len(phonemes) == 1 and "pˈitsə" in phonemes[0] and phonemes[0].endswith(".")


@pytest.mark.slow
def test_voices_and_errors(tts, random_pth):
    assert len(tts.voices()) == 28
    tts.set_voice("bm_george")  # British voice: en-gb phonemes
    try:
        assert list(tts.synthesize("Good morning."))
    finally:
        tts.set_voice("af_heart")
    with pytest.raises(UnknownVoice, match="af_heart"):
        tts.set_voice("xx_nobody")
    assert tts.voice == "af_heart"
    for text in ("", "  ", "...", "?!"):
        assert list(tts.synthesize(text)) == []
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        KokoroTorchSynthesizer(random_pth.with_name("missing.pth"), ensure("kokoro-voices-en").directory)
    with pytest.raises(ValueError, match="g2p"):
        KokoroTorchSynthesizer(random_pth, ensure("kokoro-voices-en").directory, g2p="festival")


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_runs_on_cuda(random_pth):
    gpu = KokoroTorchSynthesizer(random_pth, ensure("kokoro-voices-en").directory, device="cuda")
    assert next(gpu.model.parameters()).device.type == "cuda"
    assert gpu.asynchronous is True
    assert list(gpu.synthesize("Hello there."))
    gpu.synchronize()
