"""`cadence bench gpu`: the prepared check of the GPU profile, in one run. On a CUDA machine it measures the LLM's
time to first token and ms per token with every layer on the GPU (each GGUF given, default the embedded Qwen 0.5B
and 1.5B; `--gguf NAME=FILE.hdr.gz` rebuilds a random-weight file of a real model's shape from its header,
app/bench/gguf_random.py), the torch Kokoro voice's time per segment, how much each slows down when LLM and TTS run
at once (two threads) against interleaved by the scheduler (one device lane, small units), `cadence bench
scheduler`'s three modes, and NeMo streaming step latency at Nemotron's 0.6B shape (random weights,
app/bench/nemo_random.py). Every device unit ends on the engines' synchronize, so the figures are device time.

`--dry-run` runs the same code on the CPU with tiny sizes (SmolLM2 135M, random-weight Kokoro, the tiny NeMo, a
few tokens): what CI runs so the check cannot rot. Its figures are not GPU figures."""
from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from app.bench import PROMPTS, Log, figures_table, installed, machine_line
from app.bench.engines import LONG_PROMPT, SENTENCES
from app.config import Config
from app.errors import InputError
from app.metrics.stats import summarize

SECTIONS = ("llm", "tts", "contention", "scheduler", "nemo")
SIZES = {  # dry run (CPU, tiny) / full (a GPU)
    True: {"llm": ["smollm2-135m"], "tokens": 8, "repeats": 2, "segments": 2, "nemo": "tiny", "steps": 4,
           "prompts": 1, "reply_tokens": 12, "chunks": 3},
    False: {"llm": ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"], "tokens": 64, "repeats": 5, "segments": 6,
            "nemo": "nemotron-0.6b", "steps": 30, "prompts": 4, "reply_tokens": 96, "chunks": 8},
}
FRAMES_PER_TOKEN = 2.1  # random Kokoro weights: durations forced to what the real model gives (2.0-2.3)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (what CI runs)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                        help="where the LLM, TTS and NeMo run (auto: CUDA when llama.cpp and torch both have it)")
    parser.add_argument("--gguf", action="append", default=[], metavar="NAME=FILE",
                        help="an LLM to time: a .gguf, or a .hdr.gz header rebuilt with random weights (repeatable)")
    parser.add_argument("--kokoro", metavar="FILE", help="Kokoro-82M .pth (default: kokoro-82m-pth when installed, "
                                                         "else random weights)")
    parser.add_argument("--skip", action="append", default=[], choices=SECTIONS, help="leave a section out")


def resolve_device(requested: str, dry_run: bool) -> tuple[str, str]:
    """("cuda" | "cpu", the GPU's name or a reason there is none)."""
    from app.placement import probe

    machine = probe()
    has_cuda = machine.llama_offload and bool(machine.torch_cuda)
    if requested == "cuda" and not has_cuda:
        raise InputError("bench gpu --device cuda: this machine cannot run it (llama.cpp offload: "
                         f"{'yes' if machine.llama_offload else 'no'}, torch CUDA: {machine.torch_cuda or 'no'}); "
                         "see `cadence doctor --compute cuda`")
    device = "cuda" if requested == "cuda" or (requested == "auto" and has_cuda and not dry_run) else "cpu"
    return device, machine.gpu or "no GPU seen"


def llm_files(args: argparse.Namespace, size: dict, workdir: Path, log: Log) -> tuple[dict[str, Path], list[str]]:
    from app.bench.gguf_random import rebuild
    from engines.store import ensure

    files: dict[str, Path] = {}
    notes: list[str] = []
    for item in args.gguf:
        name, sep, file = item.partition("=")
        path = Path(file if sep else name).expanduser()
        if not path.is_file():
            raise InputError(f"--gguf {item}: no such file")
        if path.name.endswith(".hdr.gz"):
            log(f"rebuilding {path.name} with random weights")
            path = rebuild(path, workdir / f"{path.name[:-7]}.gguf")
            notes.append(f"{name}: random weights of the real shape (weight values move speed a little)")
        files[name if sep else path.stem] = path
    if not args.gguf:
        for model_id in size["llm"]:
            if installed(model_id):
                files[model_id] = ensure(model_id).file()
            else:
                notes.append(f"{model_id}: not installed, not timed (cadence models install {model_id})")
    return files, notes


def load_llm(path: Path, device: str, cfg: Config):
    from engines.llm_llama import LlamaGenerator

    return LlamaGenerator(path, n_threads=cfg.llm.n_threads, n_gpu_layers=-1 if device == "cuda" else 0,
                          n_ctx=2048, temperature=0.0, repetition_guard=False, name=path.stem)


def bench_llm(llm, system: str, tokens: int, repeats: int) -> dict:
    """Time to first token (prompt cold each time) and ms per token of a greedy continuation."""
    from engines.protocols import Message

    first, per_token = [], []
    for _ in range(repeats):
        llm.reset()
        t0 = time.perf_counter()
        generation = llm.start([Message("system", system), Message("user", LONG_PROMPT)], tokens + 1)
        generation.step(1)
        llm.synchronize()
        first.append((time.perf_counter() - t0) * 1000)
        t1, made = time.perf_counter(), 0
        while made < tokens:
            step = generation.step(tokens - made)
            made += step.tokens
            if step.finished or not step.tokens:
                break
        llm.synchronize()
        if made:
            per_token.append((time.perf_counter() - t1) * 1000 / made)
    return {"first_token_ms": summarize(first), "ms_per_token": summarize(per_token),
            "prompt_tokens": generation.prompt_tokens, "layers_on_gpu": llm.asynchronous}


def load_tts(args: argparse.Namespace, device: str, dry_run: bool, workdir: Path) -> tuple[object, str]:
    from app.bench.kokoro_random import random_kokoro_pth
    from engines.store import ensure
    from engines.tts_kokoro_torch import KokoroTorchSynthesizer

    if args.kokoro:
        weights, what = Path(args.kokoro).expanduser(), "the given weights"
    elif not dry_run and installed("kokoro-82m-pth"):
        weights, what = ensure("kokoro-82m-pth").file(), "kokoro-82m-pth"
    else:
        weights, what = random_kokoro_pth(workdir, FRAMES_PER_TOKEN), "random weights, real shape"
    tts = KokoroTorchSynthesizer(weights, ensure("kokoro-voices-en").directory, device=device, g2p="espeak")
    return tts, what


def synthesize_ms(tts, sentence: str) -> tuple[float, float]:
    """(compute ms, audio s) of one segment, device work included."""
    t0 = time.perf_counter()
    audio_s = sum(chunk.duration_s for chunk in tts.synthesize(sentence))
    tts.synchronize()
    return (time.perf_counter() - t0) * 1000, audio_s


def bench_tts(tts, segments: int) -> dict:
    synthesize_ms(tts, "Hello there.")  # warm-up
    times, audio = zip(*(synthesize_ms(tts, s) for s in SENTENCES[:segments]), strict=True)
    return {"segment_ms": summarize(times), "real_time_factor": summarize(t / 1000 / a for t, a in zip(times, audio))}


def contention(llm, tts, system: str, chunks: int, chunk_tokens: int = 8) -> dict:
    """LLM chunks and TTS segments alone, in two threads at once, and interleaved on the scheduler's device lane."""
    from engines.protocols import Message
    from scheduler import Priority, Scheduler, WorkUnit

    def llm_chunk(generation) -> None:
        generation.step(chunk_tokens)
        llm.synchronize()

    def new_generation():
        llm.reset()
        generation = llm.start([Message("system", system), Message("user", LONG_PROMPT)], chunks * chunk_tokens + 1)
        generation.prefill()
        return generation

    def timed(fn, *a) -> float:
        t0 = time.perf_counter()
        fn(*a)
        return (time.perf_counter() - t0) * 1000

    sentences = [SENTENCES[i % len(SENTENCES)] for i in range(chunks)]
    gen = new_generation()
    alone_llm = [timed(llm_chunk, gen) for _ in range(chunks)]
    alone_tts = [synthesize_ms(tts, s)[0] for s in sentences]
    together: dict[str, list[float]] = {"llm": [], "tts": []}
    gen = new_generation()
    threads = [threading.Thread(target=lambda: together["llm"].extend(timed(llm_chunk, gen) for _ in range(chunks))),
               threading.Thread(target=lambda: together["tts"].extend(synthesize_ms(tts, s)[0] for s in sentences))]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    concurrent_wall = (time.perf_counter() - t0) * 1000
    gen = new_generation()
    barrier = _barrier(llm, tts)
    with Scheduler(device_barrier=barrier) as sched:
        t0 = time.perf_counter()
        handles = []
        for sentence in sentences:
            handles.append(sched.submit(WorkUnit(lambda _t: gen.step(chunk_tokens), "llm", 1, Priority.LLM)))
            handles.append(sched.submit(WorkUnit(lambda _t, s=sentence: list(tts.synthesize(s)), "tts", 1,
                                                 Priority.TTS)))
        for handle in handles:
            handle.result(600)
        interleaved_wall = (time.perf_counter() - t0) * 1000
        spans = sched.spans.snapshot()
    interleaved = {stage: [s.run_s * 1000 for s in spans if s.stage == stage] for stage in ("llm", "tts")}

    def slowdown(values: list[float], alone: list[float]) -> float:
        return round(sum(values) / max(sum(alone), 1e-9), 2)
    return {"chunk_tokens": chunk_tokens, "chunks": chunks,
            "alone": {"llm_chunk_ms": summarize(alone_llm), "tts_segment_ms": summarize(alone_tts)},
            "concurrent": {"llm_chunk_ms": summarize(together["llm"]), "tts_segment_ms": summarize(together["tts"]),
                           "wall_ms": round(concurrent_wall, 1), "llm_slowdown": slowdown(together["llm"], alone_llm),
                           "tts_slowdown": slowdown(together["tts"], alone_tts)},
            "interleaved": {"llm_chunk_ms": summarize(interleaved["llm"]),
                            "tts_segment_ms": summarize(interleaved["tts"]), "wall_ms": round(interleaved_wall, 1),
                            "llm_slowdown": slowdown(interleaved["llm"], alone_llm),
                            "tts_slowdown": slowdown(interleaved["tts"], alone_tts)}}


def _barrier(llm, tts):
    def barrier() -> None:
        llm.synchronize()
        tts.synchronize()
    return barrier


def scheduler_modes(cfg: Config, llm, tts, size: dict, log: Log) -> dict:
    from app.bench import scheduler as sched_bench

    out = {}
    for mode in sched_bench.MODES:
        m = sched_bench.run_mode(mode, cfg, llm, tts, PROMPTS[:size["prompts"]], log,
                                 reply_tokens=size["reply_tokens"], device_barrier=_barrier(llm, tts))
        out[mode] = {k: m[k] for k in ("first_audio_ms", "total_ms", "first_token_ms", "underruns")}
    return out


def bench_nemo(device: str, shape: str, steps: int, workdir: Path, log: Log) -> dict:
    from app.bench import speech_clips
    from app.bench.nemo_random import build_random_nemo
    from engines.asr_nemo import NemoStreamingRecognizer

    log(f"building a random NeMo streaming model of the {shape} shape")
    path = build_random_nemo(workdir / "nemo", shape=shape)
    asr = NemoStreamingRecognizer(path, chunk_ms=160, device=device, inline=False, threads=None)
    import torch

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    audio = max(speech_clips(2.0, 30.0), key=lambda c: len(c[1]))[1]
    times: list[float] = []
    asr.start()
    asr.accept(audio)
    while asr.wants_step() and len(times) < steps + 1:
        t0 = time.perf_counter()
        asr.step()
        asr.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    params = sum(p.numel() for p in asr.model.parameters())
    memory = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    return {"shape": shape, "parameters_m": round(params / 1e6, 1), "chunk_ms": 160,
            "step_ms": summarize(times[1:]), "first_step_ms": round(times[0], 1) if times else None,
            "gpu_memory_mib": memory}


def run(cfg: Config, args: argparse.Namespace, log: Log) -> dict:
    dry = bool(args.dry_run)
    size = SIZES[dry]
    device, gpu = resolve_device(args.device, dry)
    skip = set(args.skip)
    if not {"llm", "contention", "scheduler"} <= skip or "tts" not in skip:
        try:
            import kokoro  # noqa: F401
            import torch  # noqa: F401
        except ImportError:
            raise InputError("bench gpu needs the torch Kokoro voice: install the `kokoro` extra "
                             "(CADENCE_EXTRAS=test,kokoro bash packaging/install.sh)") from None
    from app.config import runtime_settings

    system = runtime_settings(cfg).system_prompt
    result: dict = {"benchmark": "gpu", "dry_run": dry, "device": device, "gpu": gpu, "llm": {}, "notes": []}
    with tempfile.TemporaryDirectory(prefix="cadence-bench-gpu-") as tmp:
        workdir = Path(tmp)
        files, result["notes"] = llm_files(args, size, workdir, log)
        tts, result["tts_weights"] = load_tts(args, device, dry, workdir)
        llms = {}
        for name, path in files.items():
            log(f"LLM {name} on {device}")
            llms[name] = load_llm(path, device, cfg)
            if "llm" not in skip:
                result["llm"][name] = bench_llm(llms[name], system, size["tokens"], size["repeats"])
        if "tts" not in skip:
            log("Kokoro torch per segment")
            result["tts"] = bench_tts(tts, size["segments"])
        main = next(iter(llms.values()), None)
        if main is not None and "contention" not in skip:
            log("LLM and TTS alone, at once, interleaved")
            result["contention"] = contention(main, tts, system, size["chunks"])
        if main is not None and "scheduler" not in skip:
            result["scheduler"] = scheduler_modes(cfg, main, tts, size, log)
        if "nemo" not in skip:
            try:
                import nemo  # noqa: F401
            except ImportError:
                result["notes"].append("nemo: NeMo is not installed (the `nemo` extra), not timed")
            else:
                result["nemo"] = bench_nemo(device, size["nemo"], size["steps"], workdir, log)
        for llm in llms.values():
            llm.close()
    return result


def format_report(result: dict) -> str:
    rows: list[tuple[str, str, dict]] = []
    for name, figures in result["llm"].items():
        rows += [(name, "first token ms", figures["first_token_ms"]), (name, "ms per token", figures["ms_per_token"])]
    if "tts" in result:
        rows += [("kokoro torch", "segment ms", result["tts"]["segment_ms"]),
                 ("kokoro torch", "real-time factor", result["tts"]["real_time_factor"])]
    for mode, m in result.get("scheduler", {}).items():
        rows += [(f"scheduler {mode}", "first audio ms", m["first_audio_ms"])]
    if "nemo" in result:
        rows.append((f"nemo {result['nemo']['shape']}", "step ms (160 ms chunk)", result["nemo"]["step_ms"]))
    head = [machine_line(result["machine"]),
            f"device: {result['device']} ({result['gpu']})" + (" - DRY RUN: tiny sizes, not GPU figures"
                                                               if result["dry_run"] else ""),
            f"tts weights: {result['tts_weights']}"]
    head += [f"note: {n}" for n in result["notes"]]
    c = result.get("contention")
    if c:
        head.append(f"slow-down against alone ({c['chunks']} LLM chunks of {c['chunk_tokens']} tokens, "
                    f"{c['chunks']} TTS segments): at once LLM x{c['concurrent']['llm_slowdown']} TTS "
                    f"x{c['concurrent']['tts_slowdown']} (wall {c['concurrent']['wall_ms']:.0f} ms); interleaved "
                    f"LLM x{c['interleaved']['llm_slowdown']} TTS x{c['interleaved']['tts_slowdown']} "
                    f"(wall {c['interleaved']['wall_ms']:.0f} ms)")
    for mode, m in result.get("scheduler", {}).items():
        head.append(f"scheduler {mode}: underruns {m['underruns']}")
    return "\n".join(head + ["", figures_table(rows, first="what")])
