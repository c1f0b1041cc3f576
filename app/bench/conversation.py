"""`cadence bench conversation`: a scripted headless session of short and long spoken questions (assets/bench,
synthesized with voices the agent does not use), fed at real-time pace through the real session; prints the
min / P50 / P90 / max table of every stage and voice-to-voice (the table the reference agents publish), the
recognizer's word error rate on the questions, and whether the V2V goal was met."""
from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from app.paths import asset

GOAL_MS = {"p50": 900.0, "p90": 1300.0}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("conversation", help="a 20-turn spoken session: per-stage latency table")
    p.add_argument("--turns", type=int, default=20, help="how many questions (1-20, default 20)")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    p.add_argument("--report", metavar="FILE", help="also write the full per-turn headless report")
    p.set_defaults(func=run)


def machine() -> str:
    model = ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{model or platform.processor()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def run(args) -> int:
    from app.cli import load_config
    from app.engine_factory import build_engines
    from app.errors import InputError
    from app.headless.report import build_report, summary_table, write_report
    from app.headless.runner import run_conversation
    from app.headless.script import load_turns, parse_script
    from app.metrics.wer import corpus_wer

    if not 1 <= args.turns <= 20:
        raise InputError("--turns must be between 1 and 20")
    cfg = load_config(args)
    script = parse_script(asset("bench/conversation.json"))[: args.turns]
    questions = json.loads(asset("bench/questions.json").read_text())[: args.turns]
    turns = load_turns(script, None)
    engines = build_engines(cfg)
    result = run_conversation(engines, cfg, turns, timeout_s=120 + 60 * args.turns)
    report = build_report(result)
    pairs = [(q["text"], t["transcript"]) for q, t in zip(questions, report["turns"])]
    asr_wer = corpus_wer(pairs) if pairs else None
    v2v = report["summary"]["v2v"]
    met = v2v["p50"] is not None and v2v["p50"] <= GOAL_MS["p50"] and v2v["p90"] <= GOAL_MS["p90"]
    print(f"cadence bench conversation: {len(report['turns'])} of {len(turns)} turns answered, "
          f"mode {cfg.scheduler.mode}, engines {', '.join(f'{k}={v}' for k, v in report['engines'].items())}")
    print(f"machine: {machine()}")
    print(summary_table(report))
    print(f"ASR word error rate on the questions: {asr_wer * 100:.1f} %" if asr_wer is not None else "no turns")
    print(f"goal V2V P50 <= {GOAL_MS['p50']:.0f} ms and P90 <= {GOAL_MS['p90']:.0f} ms: {'met' if met else 'NOT met'}")
    for note in report["notes"]:
        print(f"note: {note}")
    figures = {"summary": report["summary"], "asr_wer": asr_wer, "goal_ms": GOAL_MS, "goal_met": met,
               "turns_answered": len(report["turns"]), "turns_asked": len(turns), "machine": machine(),
               "mode": cfg.scheduler.mode, "engines": report["engines"], "v2v_disagreeing_turns":
               report["v2v_disagreeing_turns"], "notes": report["notes"]}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    if args.report:
        write_report(report, Path(args.report))
    return 0 if report["turns"] else 1
