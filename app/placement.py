"""Where each engine runs: the `models.compute` setting (auto / cpu / cuda) against what this machine has.

`probe()` looks once at the machine (an NVIDIA GPU through `nvidia-smi`, llama.cpp's GPU offload, torch's CUDA,
onnxruntime's providers; each probe imports its library only when asked). `plan(cfg, machine)` is pure: it says
for each engine whether it runs on the CPU, the GPU or a server, and, where `cuda` was asked for and cannot be had,
the one line that says how to fix it. VAD and Smart Turn stay on the CPU whatever the setting (they are tiny,
and the GPU is the device lane's; Smart Turn takes its turn on the device lane when that lane is the CPU's cores).
`cadence doctor` prints both; the engine factory takes the LLM's GPU layers from the plan."""
from __future__ import annotations

import platform
import shutil
import subprocess
from dataclasses import dataclass, field

from app.config import Config

REBUILD = ("rebuild llama-cpp-python for this GPU: CADENCE_GPU=cuda bash packaging/install.sh (or by hand: "
           "CMAKE_ARGS=\"-DGGML_CUDA=on\" pip install --force-reinstall --no-cache-dir --no-binary llama-cpp-python "
           "llama-cpp-python==0.3.36)")


@dataclass(frozen=True)
class Machine:
    gpu: str = ""  # "NVIDIA H100 80GB HBM3, driver 580.65, 81559 MiB" or "" (none seen)
    llama_offload: bool = False  # llama.cpp was built with a GPU backend
    torch_cuda: str = ""  # torch's CUDA runtime when torch sees a GPU ("12.8"), else ""
    torch_version: str = ""  # "" when torch is not installed
    onnx_providers: tuple[str, ...] = ()
    arch: str = field(default_factory=platform.machine)


@dataclass(frozen=True)
class Place:
    engine: str  # "llm", "asr", ...
    where: str  # "cpu" | "cuda" | "server"
    why: str  # one line


@dataclass(frozen=True)
class Plan:
    places: tuple[Place, ...]
    llm_gpu_layers: int  # what llama.cpp is given
    problems: tuple[str, ...] = ()  # "cuda" asked for and not available: how to fix each

    def where(self, engine: str) -> str:
        return next(p.where for p in self.places if p.engine == engine)


def probe(with_torch: bool = True) -> Machine:
    """What this machine has (a second or two with torch; `with_torch=False` skips it)."""
    gpu = ""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
            first = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
            if first:
                name, driver, memory = (x.strip() for x in first.split(",")[:3])
                gpu = f"{name}, driver {driver}, {memory}"
        except (OSError, subprocess.TimeoutExpired, ValueError):
            gpu = ""
    try:
        import llama_cpp

        offload = bool(llama_cpp.llama_supports_gpu_offload())
    except (ImportError, AttributeError):
        offload = False
    torch_version = torch_cuda = ""
    if with_torch:
        try:
            import torch

            torch_version = torch.__version__
            torch_cuda = (torch.version.cuda or "") if torch.cuda.is_available() else ""
        except ImportError:
            pass
    try:
        import onnxruntime

        providers = tuple(onnxruntime.get_available_providers())
    except ImportError:
        providers = ()
    return Machine(gpu, offload, torch_cuda, torch_version, providers)


def plan(cfg: Config, machine: Machine) -> Plan:
    """Each engine's place under `models.compute`; pure (the machine is given)."""
    compute, m = cfg.models.compute, cfg.models
    want_gpu = compute in ("auto", "cuda")
    problems: list[str] = []
    places = [Place("vad", "cpu", "the CPU lane, always (tiny; the GPU is the device lane's)"),
              Place("turn", "cpu", "the CPU, always: its own lane beside a GPU, else between the device lane's units")]
    if cfg.llm.base_url:
        places.append(Place("llm", "server", f"on the server at {cfg.llm.base_url}"))
        layers = 0
    elif want_gpu and machine.llama_offload and (machine.gpu or compute == "cuda" or cfg.llm.n_gpu_layers != 0):
        # (a GPU nvidia-smi does not list, such as Metal, counts when llm.n_gpu_layers asks for it)
        layers = cfg.llm.n_gpu_layers if cfg.llm.n_gpu_layers != 0 else -1
        places.append(Place("llm", "cuda", f"llama.cpp offloads {'all' if layers < 0 else layers} layers"))
    else:
        layers = 0
        if compute == "cuda":
            problems.append(f"llm: llama.cpp here is a CPU build; {REBUILD}" if not machine.llama_offload
                            else "llm: no NVIDIA GPU seen (nvidia-smi): check the driver")
        why = "llama.cpp is a CPU build" if not machine.llama_offload else "no GPU" if not machine.gpu else \
            "models.compute = cpu"
        places.append(Place("llm", "cpu", why))
    torch_gpu = want_gpu and bool(machine.torch_cuda)
    asr_torch = bool(m.asr_path) or _engine(m.asr) == "nemo"
    tts_torch = bool(m.tts_path) or _engine(m.tts) == "kokoro_torch"
    for engine, uses_torch, what in (("asr", asr_torch, "NeMo streaming ASR"), ("tts", tts_torch, "torch Kokoro")):
        if uses_torch and torch_gpu:
            places.append(Place(engine, "cuda", f"{what} on torch CUDA {machine.torch_cuda}"))
        elif uses_torch:
            if compute == "cuda":
                problems.append(f"{engine}: torch sees no CUDA GPU (torch {machine.torch_version or 'not installed'}"
                                "): install a CUDA build of torch (pip install torch from PyPI on Linux x86-64)")
            places.append(Place(engine, "cpu", f"{what} on the CPU"))
        else:
            hint = {"tts": "; models.tts = kokoro-82m-pth voices on the GPU",
                    "asr": "; a NeMo streaming model (models.asr_path) listens on the GPU"}[engine] if torch_gpu else ""
            places.append(Place(engine, "cpu", f"a CPU engine (onnxruntime / CTranslate2 CPU builds){hint}"))
    return Plan(tuple(places), layers, tuple(problems))


def _engine(model_id: str) -> str:
    from engines.catalog import UnknownModel, get

    try:
        return get(model_id).engine
    except UnknownModel:
        return ""
