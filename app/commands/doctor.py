"""`cadence doctor`: what this machine has for Cadence (GPU, driver, llama.cpp's backend, torch's CUDA,
onnxruntime's providers) and where each engine will run under `models.compute`, with one line saying how to fix
what a `cuda` setting cannot have. Exit code 0, or 1 when `models.compute = "cuda"` cannot be met."""
from __future__ import annotations

import argparse
import platform


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="where each engine will run on this machine, and what is missing for a GPU")
    p.add_argument("--compute", choices=("auto", "cpu", "cuda"),
                   help="judge this setting instead of the config's models.compute")
    p.set_defaults(func=cmd_doctor)


def report(cfg, machine) -> tuple[str, int]:
    from app.placement import REBUILD, plan

    p = plan(cfg, machine)
    lines = [f"machine: {platform.system()} {machine.arch}, Python {platform.python_version()}",
             f"GPU: {machine.gpu or 'none seen (no nvidia-smi, or it lists no GPU)'}",
             "llama.cpp: " + ("built with GPU offload" if machine.llama_offload else "CPU build (no GPU offload)"),
             "torch: " + (f"{machine.torch_version}, CUDA {machine.torch_cuda}" if machine.torch_cuda else
                          f"{machine.torch_version}, no CUDA GPU" if machine.torch_version else "not installed"),
             "onnxruntime providers: " + (", ".join(machine.onnx_providers) or "none (not installed)"),
             f"models.compute = {cfg.models.compute}:"]
    lines += [f"  {place.engine:5} {place.where:7} {place.why}" for place in p.places]
    if machine.gpu and not machine.llama_offload and not cfg.llm.base_url:
        lines.append(f"note: this machine has a GPU but llama.cpp cannot use it: {REBUILD}")
    lines += [f"problem: {problem}" for problem in p.problems]
    return "\n".join(lines), 1 if p.problems else 0


def cmd_doctor(args) -> int:
    import dataclasses

    from app.config import load_config
    from app.placement import probe

    cfg = load_config(args)
    if getattr(args, "compute", None):
        cfg = dataclasses.replace(cfg, models=dataclasses.replace(cfg.models, compute=args.compute))
    text, code = report(cfg, probe())
    print(text)
    return code
