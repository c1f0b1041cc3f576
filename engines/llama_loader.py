"""Loading a GGUF model and its context through llama.cpp's C API (llama_cpp.Llama cannot turn weight repacking
off), with llama.cpp's log kept off stderr and its errors kept to explain a failed load."""
from __future__ import annotations

import ctypes
from collections import deque
from pathlib import Path
from typing import cast

import llama_cpp


class LlmLoadError(ValueError):
    """The model file cannot be loaded by llama.cpp (missing, not GGUF, truncated, unsupported)."""


# ---- llama.cpp logging: nothing on stderr; errors kept to explain a failed load -------------

_log_tail: deque[str] = deque(maxlen=20)
_log_level = [0]


@llama_cpp.llama_log_callback
def _log_sink(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
    if level != 5:  # 5 continues the previous message
        _log_level[0] = level
    if _log_level[0] == 4:  # GGML_LOG_LEVEL_ERROR (3 is WARN, 2 INFO, 1 DEBUG)
        line = text.decode("utf-8", "replace").strip()
        if line:
            _log_tail.append(line)


def _quiet_logs() -> None:
    llama_cpp.llama_log_set(_log_sink, ctypes.c_void_p(0))


def _check_gguf(path: Path) -> None:
    if not path.is_file():
        raise LlmLoadError(f"LLM model file not found: {path}")
    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise LlmLoadError(f"{path} is not a GGUF model file (llama.cpp needs GGUF)")


_backend_ready = [False]


def repack_by_default(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether llama.cpp's CPU weight repacking is safe and worth having here: on, except on CPUs with Intel AMX
    (its AMX buffer type crashed batched decodes of this build there). On a 2-core AMD EPYC it made a 1.5B Q4_K_M
    token 43 -> 32 ms and small prompt batches ~25 % faster."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux: no AMX CPUs to avoid on macOS / aarch64; Windows is not a target
        return True
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return not any(flag.startswith("amx") for flag in flags)


def model_meta(model: llama_cpp.llama_model_p, key: str) -> str:
    # llama_cpp annotates `buf` as bytes, but llama.cpp writes into it: it takes a ctypes char buffer
    buf = ctypes.create_string_buffer(1 << 16)
    n = llama_cpp.llama_model_meta_val_str(model, key.encode(), cast(bytes, buf), len(buf))
    if n >= len(buf):
        buf = ctypes.create_string_buffer(n + 1)
        n = llama_cpp.llama_model_meta_val_str(model, key.encode(), cast(bytes, buf), len(buf))
    return buf.value.decode("utf-8", "replace") if n >= 0 else ""


def load_model(path: Path, n_gpu_layers: int, repack: bool, n_ctx: int, n_batch: int,
               n_threads: int) -> tuple[llama_cpp.llama_model_p, llama_cpp.llama_context_p]:
    """(model, context) pointers; LlmLoadError with llama.cpp's own errors when it refuses."""
    _check_gguf(path)
    _quiet_logs()
    if not _backend_ready[0]:
        llama_cpp.llama_backend_init()
        _backend_ready[0] = True
    _log_tail.clear()
    mp = llama_cpp.llama_model_default_params()
    mp.n_gpu_layers = n_gpu_layers if n_gpu_layers >= 0 else 0x7FFFFFFF
    mp.use_extra_bufts = repack
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), mp)
    if not model:
        raise LlmLoadError(f"llama.cpp cannot load {path}: {' | '.join(_log_tail) or 'unknown error'}")
    try:
        ctx = new_context(model, path, n_gpu_layers, n_ctx, n_batch, n_threads)
    except LlmLoadError:
        llama_cpp.llama_model_free(model)
        raise
    return model, ctx


def new_context(model: llama_cpp.llama_model_p, path: Path, n_gpu_layers: int, n_ctx: int, n_batch: int,
                n_threads: int) -> llama_cpp.llama_context_p:
    """A context (KV cache, one sequence) on a loaded model; several can share one model's weights."""
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = n_ctx, n_batch, n_batch, 1
    cp.n_threads = cp.n_threads_batch = n_threads
    cp.no_perf = True
    # llama.cpp's "auto" turns flash attention on for the CPU too, where it makes every token cost more as the
    # cache grows (Qwen 0.5B, 2 cores: 15 new tokens over 1840 cached ones 384 ms with it, 114 ms without;
    # decoding 26.7 vs 17.7 ms/token). It stays on "auto" when layers run on a GPU.
    cp.flash_attn_type = 0 if n_gpu_layers == 0 else -1
    _log_tail.clear()
    ctx = llama_cpp.llama_init_from_model(model, cp)
    if not ctx:
        raise LlmLoadError(f"llama.cpp cannot create a context for {path}: {' | '.join(_log_tail) or 'unknown'}")
    return ctx
