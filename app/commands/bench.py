"""`cadence bench SUBCOMMAND [--json FILE] [--quick]`: latency benchmarks on this machine.

Each sub-command is one module of app/bench/, listed in SUBCOMMANDS (name -> (module, help)); adding a benchmark
is one line there. A module exposes `run(cfg, args, log) -> dict` and `format_report(result) -> str`, and may
expose `add_arguments(parser)` for its own options: this file then adds the shared options (--json, --quick), loads
the config (so `--set` applies), sizes the thread pools, adds the machine figures to the result, prints the report
and writes the JSON. A module that defines `register(bench_subparsers)` instead builds its own sub-command. Either
way it must keep heavy imports inside functions (it is imported when the parser is built)."""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from app.errors import InputError

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "engines": ("app.bench.engines", "per-engine latency: VAD, Smart Turn, ASR finish, LLM first token and "
                                     "tokens/s, TTS first audio and real-time factor"),
    "scheduler": ("app.bench.scheduler", "the same replies (real LLM + TTS) through the interleaved, concurrent "
                                         "and sequential scheduler modes: first audio, total time, underruns"),
    "conversation": ("app.bench.conversation", "a spoken session of 20 questions through the real session: "
                                               "ASR, turn, LLM first token, TTS first audio and V2V"),
    "soak": ("app.bench.soak", "one long session (default 200 turns): memory growth, V2V drift, LLM context kept "
                               "within its window with the system prompt first"),
    "answers": ("app.bench.answers", "65 spoken questions with accepted answers through the real session: accuracy, "
                                     "unreadable symbols, repetition loops, spoken length, V2V, memory"),
    "turns": ("app.bench.turns", "the end-of-turn rule on labelled pauses (ends of turns, mid-sentence hesitations, "
                                 "a sentence before the question; real people, Kokoro voices, espeak-ng): "
                                 "takeovers and the wait added to complete turns, per rule"),
    "remote": ("app.bench.remote", "the same spoken questions with the LLM in-process, through llama.cpp's "
                                   "OpenAI-compatible server (also with added round trips), and from several "
                                   "sessions at once against one server: V2V and ratios"),
    "gpu": ("app.bench.gpu", "the GPU profile's check: LLM first token and ms/token with all layers on the GPU, "
                             "torch Kokoro per segment, LLM+TTS at once vs interleaved, the scheduler's modes, NeMo "
                             "streaming steps at the 0.6B shape (--dry-run: tiny sizes on the CPU)"),
    "serve": ("app.bench.realtime", "Cadence behind its Realtime API server (cadence serve), measured from the "
                                    "official openai SDK client: client-side V2V with 1, 2 and 4 clients at once"),
    "echo": ("app.bench.echo", "the echo canceller on the agent's voice with real people talking over it: echo "
                               "reduction, near-end level in double talk, delay estimate, WER with and without"),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure engine and scheduler latency on this machine")
    bench_sub = p.add_subparsers(dest="bench_command", metavar="BENCHMARK")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        if hasattr(module, "register"):  # a module that builds its own sub-command (parser, options, func)
            module.register(bench_sub)
            continue
        b = bench_sub.add_parser(name, help=help_text, description=help_text)
        b.add_argument("--json", metavar="FILE", help="also write the figures to this JSON file")
        b.add_argument("--quick", action="store_true",
                       help="a short smoke run: few repetitions and prompts (not for publishing figures)")
        add_arguments = getattr(module, "add_arguments", None)
        if add_arguments is not None:
            add_arguments(b)
        b.set_defaults(func=cmd_bench, bench_module=module_name)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def _log(message: str) -> None:
    print(f"[bench: {message}]", file=sys.stderr, flush=True)


def cmd_bench(args: argparse.Namespace) -> int:
    from app.bench import machine_info
    from app.config import load_config
    from scheduler import configure_thread_pools

    cfg = load_config(args)
    if args.json and not Path(args.json).resolve().parent.is_dir():
        raise InputError(f"{args.json}: the folder does not exist")
    configure_thread_pools(cfg.scheduler.device_threads)
    module = importlib.import_module(args.bench_module)
    result = module.run(cfg, args, _log)
    result["machine"] = machine_info(cfg)
    result["quick"] = bool(args.quick)
    print(module.format_report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        _log(f"wrote {args.json}")
    return 0
