"""NeMo cache-aware streaming recognizer: plumbing tests on a tiny random-weight model.

No real cache-aware weights exist offline (Nemotron Speech / Parakeet streaming are hub downloads), so
`app/bench/nemo_random.py` builds a tiny FastConformer transducer with the same streaming architecture and random
weights. Its text is meaningless; these tests prove the plumbing, not accuracy: the engine's incremental
features equal the whole-utterance features, it makes as many encoder steps as the audio and padding call for,
the encoder cache is carried between steps, and its tokens are exactly those of NeMo's own cache-aware
streaming simulation (CacheAwareStreamingAudioBuffer + conformer_stream_step) on the same padded audio, while
its encoder output matches one offline (whole-utterance) pass of the same chunked-attention encoder."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("nemo.collections.asr", reason="needs the `nemo` extra: pip install -e '.[nemo]'")
import torch  # noqa: E402  (installed with nemo)

from app.bench.nemo_random import build_random_nemo  # noqa: E402
from engines.asr_nemo import NemoStreamingRecognizer  # noqa: E402
from engines.audio_io import read_audio  # noqa: E402
from engines.store import ModelError  # noqa: E402
from tests.conftest import ROOT, SPEECH  # noqa: E402

CHUNK = 2560  # 160 ms at 16 kHz


@pytest.fixture(scope="module")
def tiny_rnnt(tmp_path_factory):
    return build_random_nemo(tmp_path_factory.mktemp("nemo_rnnt"))


@pytest.fixture(scope="module")
def tiny_hybrid(tmp_path_factory):
    return build_random_nemo(tmp_path_factory.mktemp("nemo_hybrid"), hybrid=True)


@pytest.fixture(scope="module")
def jfk():
    return read_audio(SPEECH / "en_jfk.wav")


@pytest.fixture(scope="module")
def rec(tiny_rnnt):
    return NemoStreamingRecognizer(tiny_rnnt, chunk_ms=160, device="cpu")


def stream(rec: NemoStreamingRecognizer, audio: np.ndarray, chunk: int = CHUNK) -> str:
    rec.start()
    for i in range(0, len(audio), chunk):
        rec.accept(audio[i:i + chunk])
    return rec.finish()


def tokens(rec: NemoStreamingRecognizer) -> list[int]:
    hyp = rec._hyps[0] if rec.decoder == "rnnt" else None
    return hyp.y_sequence.tolist() if hyp is not None else rec._pred_out[0].tolist()


def nemo_simulation(rec: NemoStreamingRecognizer, audio: np.ndarray) -> tuple[str, list[int], int]:
    """NeMo's own cache-aware streaming simulation (as in its speech_to_text_cache_aware_streaming_infer
    example) on the same audio plus the engine's end padding: (text, tokens, encoder steps)."""
    from nemo.collections.asr.parts.utils.streaming_utils import CacheAwareStreamingAudioBuffer

    model = rec.model
    padded = np.concatenate([audio, np.zeros(rec.pad_ms * 16, np.float32)])
    buf = CacheAwareStreamingAudioBuffer(model=model, online_normalization=False)
    feats, n = buf.preprocess_audio(padded)
    buf.append_processed_signal(feats[:, :, : int(n[0])])  # drop the masked frame past the valid length
    cache = model.encoder.get_initial_cache_state(batch_size=1)
    hyps = pred = None
    with torch.inference_mode():
        for k, (chunk, length) in enumerate(buf):
            pred, texts, c0, c1, c2, hyps = model.conformer_stream_step(
                processed_signal=chunk, processed_signal_length=length, cache_last_channel=cache[0],
                cache_last_time=cache[1], cache_last_channel_len=cache[2], keep_all_outputs=buf.is_buffer_empty(),
                previous_hypotheses=hyps, previous_pred_out=pred, return_transcription=True,
                drop_extra_pre_encoded=0 if k == 0 else model.encoder.streaming_cfg.drop_extra_pre_encoded)
            cache = (c0, c1, c2)
    text = texts[0]
    toks = hyps[0].y_sequence.tolist() if hyps is not None else pred[0].tolist()
    return str(getattr(text, "text", text)).strip(), toks, buf.step


def expected_steps(rec: NemoStreamingRecognizer, frames: int, final: bool) -> int:
    """Chunks NeMo's buffer cuts from `frames` feature frames: 9 frames, then 16 each (8x subsampling, 160 ms);
    at the end a short chunk of at least 8 frames still counts."""
    cfg = rec.model.encoder.streaming_cfg
    first, rest = cfg.chunk_size[0], cfg.chunk_size[1]
    if frames < first:
        return int(final and frames >= 1)
    full, left = divmod(frames - first, rest)
    return 1 + full + int(final and left >= 8)


def test_import_is_lazy():
    code = "import sys, engines.asr_nemo; print(any(m.split('.')[0] in ('nemo', 'torch') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.slow
def test_streams_like_nemos_own_simulation(rec, jfk):
    assert rec.chunk_ms == 160 and rec.att_context_size == [70, 1] and rec.pad_ms == 320
    rec.start()
    caches, partials = [], []
    for i in range(0, len(jfk), CHUNK):
        before = rec.steps
        rec.accept(jfk[i:i + CHUNK])
        assert rec.steps - before <= 2  # bounded work per 160 ms (2 only when the 90 ms first chunk is ready)
        if rec.steps > before:
            caches.append([c.clone() for c in rec.cache])
        partials.append(rec.partial())
    assert all(isinstance(p, str) for p in partials)
    frames = (len(jfk) - 256) // 160 + 1  # frames whose 512-sample window is complete
    assert rec.steps == expected_steps(rec, frames, final=False)
    text = rec.finish()
    assert isinstance(text, str) and any(partials) and text.startswith(partials[-1])  # finish() extends it
    total = (len(jfk) + rec.pad_ms * 16) // 160
    assert rec.steps == expected_steps(rec, total, final=True) == 71  # 11 s + 320 ms padding
    # the encoder state is carried: attention and convolution caches change at every step, and fill up
    for a, b in zip(caches, caches[1:]):
        assert not torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])
    assert [int(c[2][0]) for c in caches[:3]] == [2, 4, 6] and int(caches[-1][2][0]) == 70
    sim_text, sim_tokens, sim_steps = nemo_simulation(rec, jfk)
    assert sim_steps == rec.steps
    assert tokens(rec) == sim_tokens and len(sim_tokens) > 0
    assert text == sim_text and text


@pytest.mark.slow
def test_encoder_sees_the_whole_utterance_features(rec, jfk):
    """The frames fed to the encoder, chunk by chunk, are the frames of the whole padded utterance, however the
    audio arrives (here in 1000-sample pieces, not aligned to the 160-sample hop)."""
    audio = jfk[: 3 * 16000]
    seen = []
    hook = rec.model.encoder.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(kw["audio_signal"][0].clone()), with_kwargs=True)
    try:
        stream(rec, audio, chunk=1000)
    finally:
        hook.remove()
    pre = rec.model.encoder.streaming_cfg.pre_encode_cache_size[1]  # later chunks start with 9 cached frames
    fed = torch.cat([seen[0]] + [s[:, pre:] for s in seen[1:]], dim=1)
    padded = np.concatenate([audio, np.zeros(rec.pad_ms * 16, np.float32)])
    with torch.inference_mode():
        whole, n = rec._pre(input_signal=torch.from_numpy(padded)[None], length=torch.tensor([len(padded)]))
    assert int(n[0]) == len(padded) // 160
    assert 0 <= int(n[0]) - fed.shape[1] < 8  # a last piece shorter than 8 frames is dropped, as NeMo does
    torch.testing.assert_close(fed, whole[0, :, : fed.shape[1]], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_encoder_output_matches_one_offline_pass(rec, jfk):
    """The chunked-attention encoder run once over the whole utterance gives the streamed outputs."""
    audio = jfk[: 4 * 16000]
    outs = []
    hook = rec.model.encoder.register_forward_hook(lambda _m, _i, o: outs.append(o[0].clone()))
    try:
        stream(rec, audio)
    finally:
        hook.remove()
    streamed = torch.cat(outs, dim=-1)[0]
    padded = np.concatenate([audio, np.zeros(rec.pad_ms * 16, np.float32)])
    with torch.inference_mode():
        feats, n = rec._pre(input_signal=torch.from_numpy(padded)[None], length=torch.tensor([len(padded)]))
        offline, olen = rec.model.encoder(audio_signal=feats[:, :, : int(n[0])], length=n)
    assert int(olen[0]) - streamed.shape[-1] in (0, 1)  # NeMo's chunking drops a last piece under 8 frames
    torch.testing.assert_close(streamed, offline[0, :, : streamed.shape[-1]], rtol=1e-3, atol=1e-3)


@pytest.mark.slow
def test_accept_sizes_and_external_stepping_give_the_same_result(rec, tiny_rnnt, jfk):
    audio = jfk[: 5 * 16000]
    ref_text, ref_tokens = stream(rec, audio), tokens(rec)
    assert stream(rec, audio, chunk=777) == ref_text and tokens(rec) == ref_tokens
    assert stream(rec, audio) == ref_text and tokens(rec) == ref_tokens  # start() forgets everything
    rec.inline = False
    try:
        rec.start()
        for i in range(0, len(audio), CHUNK):
            before = rec.steps
            rec.accept(audio[i:i + CHUNK])
            assert rec.steps == before  # accept() only buffered and made frames
            while rec.wants_step():
                assert rec.step()
        assert not rec.step()
        assert rec.finish() == ref_text and tokens(rec) == ref_tokens
    finally:
        rec.inline = True
    with pytest.raises(RuntimeError, match="start"):
        rec.accept(audio[:CHUNK])
    rec.start()
    assert rec.finish() == "" and rec.steps == 0  # nothing heard: nothing to do


@pytest.mark.slow
def test_steps_run_as_soon_as_their_frames_are_complete(rec, jfk):
    """Latency: the 9-frame first chunk needs 96 ms (its last 512-sample STFT window), then one step per 160 ms."""
    rec.start()
    edges = [1536 + 2560 * k for k in range(4)]
    at = 0
    for k, edge in enumerate(edges):
        rec.accept(jfk[at:edge - 1])
        assert rec.steps == k
        rec.accept(jfk[edge - 1:edge])
        assert rec.steps == k + 1
        at = edge


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["rnnt", "ctc"])
def test_hybrid_model_streams_like_nemo(tiny_hybrid, jfk, decoder):
    hybrid = NemoStreamingRecognizer(tiny_hybrid, chunk_ms=80, device="cpu", decoder=decoder)
    assert hybrid.att_context_size == [70, 0] and hybrid.pad_ms == 160
    audio = jfk[: 4 * 16000]
    text = stream(hybrid, audio, chunk=1280)
    sim_text, sim_tokens, sim_steps = nemo_simulation(hybrid, audio)
    assert (hybrid.steps, tokens(hybrid), text) == (sim_steps, sim_tokens, sim_text)


@pytest.mark.slow
def test_bad_files_and_settings(tiny_rnnt, tmp_path):
    junk = tmp_path / "junk.nemo"
    junk.write_bytes(b"this is not a tar archive" * 10)
    with pytest.raises(ModelError, match="not a NeMo .nemo archive"):
        NemoStreamingRecognizer(junk)
    with pytest.raises(ModelError, match="is not a NeMo .nemo archive"):
        NemoStreamingRecognizer.from_user_file(junk)
    with pytest.raises(ModelError, match="does not exist"):
        NemoStreamingRecognizer.from_user_file(tmp_path / "missing.nemo")
    import tarfile

    fake = tmp_path / "fake.nemo"
    (tmp_path / "readme.txt").write_text("hello")
    with tarfile.open(fake, "w") as tar:
        tar.add(tmp_path / "readme.txt", arcname="readme.txt")
    with pytest.raises(ModelError, match="cannot be loaded by NeMo"):
        NemoStreamingRecognizer(fake)
    with pytest.raises(ValueError, match=r"chunks of \[80, 160, 560, 1120\] ms, not 100 ms"):
        NemoStreamingRecognizer(tiny_rnnt, chunk_ms=100, device="cpu")
    with pytest.raises(ValueError, match="decoder"):
        NemoStreamingRecognizer(tiny_rnnt, device="cpu", decoder="ctc")


@pytest.mark.slow
def test_from_user_file_and_from_catalog(tiny_rnnt, empty_model_cache, jfk):
    from engines.catalog import get
    from engines.store import ModelMissing, hub_path

    user = NemoStreamingRecognizer.from_user_file(tiny_rnnt, device="cpu")
    assert user.name == "tiny_rnnt" and isinstance(stream(user, jfk[:16000]), str)
    with pytest.raises(ModelMissing, match="cadence models install nemotron-speech-streaming-0.6b"):
        NemoStreamingRecognizer.from_catalog()
    # stand the tiny model in for the hub download: the store verifies (hashes, stamps) and hands it over
    target = hub_path(get("nemotron-speech-streaming-0.6b"))
    target.parent.mkdir(parents=True)
    target.write_bytes(tiny_rnnt.read_bytes())
    cat = NemoStreamingRecognizer.from_catalog(device="cpu")
    assert cat.name == "nemotron-speech-streaming-0.6b" and cat.chunk_ms == 160
    with pytest.raises(ValueError, match="not a NeMo ASR model"):
        NemoStreamingRecognizer.from_catalog("whisper-tiny.en")


@pytest.mark.slow
@pytest.mark.gpu
def test_streams_on_cuda(tiny_rnnt, jfk):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch (torch.cuda.is_available() is False)")
    gpu = NemoStreamingRecognizer(tiny_rnnt, device="cuda")
    assert gpu.device.type == "cuda" and gpu.cache[0].is_cuda
    audio = jfk[: 5 * 16000]
    text = stream(gpu, audio)
    sim_text, sim_tokens, sim_steps = nemo_simulation(gpu, audio)
    assert (gpu.steps, tokens(gpu), text) == (sim_steps, sim_tokens, sim_text)
    cpu = NemoStreamingRecognizer(tiny_rnnt, device="cpu")
    assert isinstance(stream(cpu, audio), str) and cpu.steps == gpu.steps
