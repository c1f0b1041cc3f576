"""`cadence bench gpu`: its CPU dry run (what CI runs, so the GPU check cannot rot) reports every section with real
engines at tiny sizes; the random-weight GGUF rebuilt from a real file's header has the file's exact size and layout
and decodes; the NeMo builder's 0.6B shape is Nemotron's. The check itself on a GPU skips where there is none."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.bench import installed
from app.bench.gguf_random import _random_data, cut_header, rebuild
from tests.conftest import run_cli


def positive(summary: dict) -> None:
    assert summary["n"] >= 1 and 0 < summary["p50"] <= summary["p90"], summary


def nemo_installed() -> bool:
    try:
        import nemo  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.slow
def test_the_dry_run_measures_every_section_on_the_cpu(tmp_path):
    pytest.importorskip("kokoro", reason="bench gpu times the torch Kokoro voice: the `kokoro` extra")
    out = tmp_path / "gpu.json"
    proc = run_cli("bench", "gpu", "--dry-run", "--json", str(out), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["dry_run"] is True and data["device"] == "cpu"
    llm = data["llm"]["smollm2-135m"]
    positive(llm["first_token_ms"])
    positive(llm["ms_per_token"])
    assert llm["layers_on_gpu"] is False and llm["prompt_tokens"] > 10
    positive(data["tts"]["segment_ms"])
    assert data["tts_weights"].startswith("random weights")
    c = data["contention"]
    for how in ("alone", "concurrent", "interleaved"):
        positive(c[how]["llm_chunk_ms"])
        positive(c[how]["tts_segment_ms"])
    assert c["concurrent"]["llm_slowdown"] > 0 and c["interleaved"]["tts_slowdown"] > 0
    assert set(data["scheduler"]) == {"interleaved", "concurrent", "sequential"}
    for mode in data["scheduler"].values():
        positive(mode["first_audio_ms"])
    if nemo_installed():
        assert data["nemo"]["shape"] == "tiny"
        positive(data["nemo"]["step_ms"])
    else:
        assert any("nemo" in note for note in data["notes"])
    lines = proc.stdout.strip().splitlines()
    assert "DRY RUN" in proc.stdout
    assert lines[-1].startswith("nemo tiny") or not nemo_installed()  # the table comes last
    assert any(line.startswith("what") and "median" in line for line in lines)


@pytest.mark.slow
def test_a_header_rebuilds_a_gguf_of_the_same_size_that_decodes(tmp_path):
    pytest.importorskip("gguf", reason="needs the gguf package (the test extra)")
    if not installed("smollm2-135m"):
        pytest.skip("smollm2-135m is not installed")
    from engines.llm_llama import LlamaGenerator
    from engines.protocols import Message
    from engines.store import ensure

    real = ensure("smollm2-135m").file()
    header = cut_header(real, tmp_path / "smol.hdr.gz")
    assert header.stat().st_size < real.stat().st_size / 20
    rebuilt = rebuild(header, tmp_path / "smol-random.gguf")
    assert rebuilt.stat().st_size == real.stat().st_size
    with open(real, "rb") as a, open(rebuilt, "rb") as b:
        assert a.read(4096) == b.read(4096)  # the same header (metadata first)
    llm = LlamaGenerator(rebuilt, n_threads=2, n_ctx=512)
    try:
        step = llm.start([Message("user", "Hello")], 6).step(6)
        assert step.tokens == 6  # random weights, real shape: it decodes (the text is noise)
    finally:
        llm.close()


def test_random_blocks_keep_small_finite_scales():
    rng = np.random.default_rng(0)
    data = np.frombuffer(_random_data("Q8_0", 34 * 4, False, rng), np.uint8).reshape(4, 34)
    scales = data[:, :2].copy().view(np.float16).ravel()
    assert np.all(np.isfinite(scales)) and np.allclose(scales, 2e-4, rtol=1e-2)
    norms = np.frombuffer(_random_data("F32", 4 * 1000, True, rng), np.float32)
    assert abs(float(norms.mean()) - 1.0) < 0.01
    with pytest.raises(ValueError, match="IQ2_XXS"):
        _random_data("IQ2_XXS", 66, False, rng)


def test_the_nemo_builder_has_nemotrons_shape():
    pytest.importorskip("omegaconf", reason="the NeMo builder needs the `nemo` extra")
    from app.bench.nemo_random import LOOKAHEADS, model_config

    cfg = model_config(Path("/nonexistent-tokenizer"), shape="nemotron-0.6b")  # the config only: nothing read
    assert cfg.encoder.n_layers == 24 and cfg.encoder.d_model == 1024 and cfg.encoder.n_heads == 8
    assert cfg.preprocessor.features == cfg.encoder.feat_in == 128 and cfg.encoder.subsampling_factor == 8
    assert cfg.decoder.prednet.pred_rnn_layers == 2 and cfg.decoder.prednet.pred_hidden == 640
    assert sorted(map(list, cfg.encoder.att_context_size)) == sorted(LOOKAHEADS)


@pytest.mark.slow
@pytest.mark.gpu
def test_the_gpu_check_runs_on_a_cuda_machine(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here: the same code runs in the dry run above")
    out = tmp_path / "gpu.json"
    proc = run_cli("bench", "gpu", "--device", "cuda", "--skip", "scheduler", "--json", str(out), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["device"] == "cuda" and all(f["layers_on_gpu"] for f in data["llm"].values())
