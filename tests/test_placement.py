"""Where each engine runs (`models.compute` against what the machine has): the pure plan for each kind of
machine, and `cadence doctor` on this one (no GPU here: everything on the CPU, said plainly)."""
from __future__ import annotations

import pytest

from app.commands.doctor import report
from app.config import from_dict
from app.placement import Machine, plan, probe
from tests.conftest import run_cli

CPU_BOX = Machine()
GPU_BOX = Machine(gpu="NVIDIA RTX 5090, driver 580.1, 32607 MiB", llama_offload=True, torch_cuda="12.8",
                  torch_version="2.13.0", onnx_providers=("CPUExecutionProvider",))
GPU_CPU_BUILD = Machine(gpu=GPU_BOX.gpu)


def test_auto_on_a_cpu_machine_runs_everything_on_the_cpu_and_is_no_problem():
    p = plan(from_dict({}), CPU_BOX)
    assert {x.where for x in p.places} == {"cpu"} and p.llm_gpu_layers == 0 and p.problems == ()


def test_auto_on_a_gpu_machine_offloads_the_llm_and_keeps_vad_and_smart_turn_on_the_cpu():
    p = plan(from_dict({"models": {"tts": "kokoro-82m-pth"}}), GPU_BOX)
    assert p.where("llm") == "cuda" and p.llm_gpu_layers == -1 and p.where("tts") == "cuda"
    assert p.where("vad") == "cpu" and p.where("turn") == "cpu" and p.where("asr") == "cpu"  # whisper: ONNX
    onnx_voice = plan(from_dict({}), GPU_BOX)  # the default int8 ONNX voice stays on the CPU; the plan says how
    assert onnx_voice.where("tts") == "cpu" and "kokoro-82m-pth" in next(x.why for x in onnx_voice.places
                                                                         if x.engine == "tts")
    assert "kokoro-82m-pth" not in next(x.why for x in plan(from_dict({}), CPU_BOX).places if x.engine == "tts")


@pytest.mark.parametrize("cfg, machine, expected", [
    ({"models": {"compute": "cpu"}}, GPU_BOX, ("cpu", 0)),
    ({"llm": {"n_gpu_layers": 12}}, GPU_BOX, ("cuda", 12)),
    ({"llm": {"n_gpu_layers": -1}}, Machine(llama_offload=True), ("cuda", -1)),  # Metal: no nvidia-smi
    ({"llm": {"base_url": "http://127.0.0.1:8080/v1"}}, GPU_BOX, ("server", 0)),
])
def test_the_llm_goes_where_the_settings_and_the_machine_say(cfg, machine, expected):
    p = plan(from_dict(cfg), machine)
    assert (p.where("llm"), p.llm_gpu_layers) == expected


def test_cuda_that_cannot_be_had_says_how_to_fix_it():
    p = plan(from_dict({"models": {"compute": "cuda", "tts": "kokoro-82m-pth"}}), GPU_CPU_BUILD)
    assert p.where("llm") == "cpu" and p.llm_gpu_layers == 0
    assert any("-DGGML_CUDA=on" in x and x.startswith("llm:") for x in p.problems), p.problems
    assert any(x.startswith("tts:") and "torch" in x for x in p.problems), p.problems
    text, code = report(from_dict({"models": {"compute": "cuda"}}), GPU_CPU_BUILD)
    assert code == 1 and "problem: llm:" in text and "this machine has a GPU but llama.cpp cannot use it" in text


def test_doctor_on_this_machine_is_right_about_it():
    machine = probe()
    proc = run_cli("doctor", timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert ("GPU: none seen" in out) == (not machine.gpu)
    assert "llama.cpp: CPU build" in out if not machine.llama_offload else "built with GPU offload" in out
    assert "vad   cpu" in out and "turn  cpu" in out and "models.compute = auto" in out
