"""Benchmarks behind `cadence bench`: shared helpers (the machine line, model availability, the speech fixtures,
figures as tables). Each benchmark module (engines, scheduler, ...) exposes `run(cfg, args, log) -> dict` and
`format_report(result) -> str`, and may expose `add_arguments(parser)`; it keeps heavy imports inside functions so
`cadence --help` stays fast."""
from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from app.config import Config

if TYPE_CHECKING:
    import numpy as np

Log = Callable[[str], None]
SPEECH_DIR = Path(__file__).resolve().parent.parent.parent / "tests" / "fixtures" / "speech"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (the platform's processor string elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_info(cfg: Config) -> dict:
    """What the figures depend on: the CPU, the cores this process may use and every thread setting."""
    from scheduler import available_cores

    return {"cpu": cpu_model(), "cores": available_cores(), "logical_cpus": os.cpu_count(),
            "llm_n_threads": cfg.llm.n_threads, "device_threads": cfg.scheduler.device_threads,
            "cpu_lane_threads": 1, "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
            "python": platform.python_version()}


def machine_line(info: dict) -> str:
    return (f"machine: {info['cpu']}, {info['cores']} core(s) usable; threads: llama.cpp {info['llm_n_threads']}, "
            f"device lane {info['device_threads']}, cpu lane {info['cpu_lane_threads']}, "
            f"OMP_NUM_THREADS={info['omp_num_threads'] or 'unset'}")


def installed(model_id: str) -> bool:
    """Whether a catalog model's files are on disk (verified or not yet verified on this machine)."""
    from engines import store
    from engines.catalog import get

    try:
        return store.status(get(model_id)) in (store.Status.VERIFIED, store.Status.INSTALLED)
    except KeyError:
        return False


def unique(ids: Iterable[str]) -> list[str]:
    """Ids in first-seen order, without repeats or blanks."""
    out: list[str] = []
    for model_id in ids:
        if model_id and model_id not in out:
            out.append(model_id)
    return out


def speech_clips(min_s: float = 0.0, max_s: float = float("inf")) -> list[tuple[str, np.ndarray]]:
    """(file name, 16 kHz float32 audio) of the speech fixtures whose duration is within [min_s, max_s], by name."""
    from engines.audio_io import read_audio

    clips = []
    for path in sorted(SPEECH_DIR.glob("*.wav")):
        audio = read_audio(path)
        if min_s <= len(audio) / 16000 <= max_s:
            clips.append((path.name, audio))
    if not clips:
        raise FileNotFoundError(f"no speech fixtures of {min_s}-{max_s} s in {SPEECH_DIR}")
    return clips


def number(value: float | None) -> str:
    """A figure in a table cell: more decimals for small values."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3f}"


def figures_table(rows: list[tuple[str, str, dict]], first: str = "engine") -> str:
    """One line per (name, metric, summary): name, metric, median, P90, n (summaries from stats.summarize)."""
    width = max([len(first)] + [len(name) for name, _, _ in rows]) + 2
    mwidth = max([6] + [len(metric) for _, metric, _ in rows]) + 2
    lines = [f"{first:<{width}}{'metric':<{mwidth}}{'median':>10}{'P90':>10}{'n':>6}"]
    for name, metric, s in rows:
        lines.append(f"{name:<{width}}{metric:<{mwidth}}{number(s.get('p50')):>10}{number(s.get('p90')):>10}"
                     f"{s.get('n', 0):>6}")
    return "\n".join(lines)

# The fixed questions both the engine and the scheduler benchmarks ask the language model.
PROMPTS = [
    "What is the tallest mountain in Africa?",
    "How many legs does a spider have?",
    "What is the capital of Australia?",
    "Why is the sky blue?",
    "Who wrote the play Romeo and Juliet?",
    "How far away is the Moon?",
    "What is the boiling point of water?",
    "Can you suggest a quick breakfast idea?",
]
WARMUP_PROMPT = "Hello, can you hear me?"
