"""`cadence bench answers`: is what Cadence says right, speakable and free of loops? 65 spoken questions
(assets/answers: short facts, arithmetic, units, how-to, and questions it should decline or hedge), each spoken by a
Kokoro voice the agent does not use, through the full headless pipeline at real-time pace in one session. Prints
accuracy (overall, per kind, and among the questions the recognizer heard right), the replies with symbols or
markup a voice cannot read, the replies with repetition loops, the mean spoken length, V2V and resident memory.

`--text` asks the language model alone, each question in a fresh conversation (seconds per question instead of
a spoken session: for comparing models and system prompts quickly); `--prompt FILE` tries another system prompt."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from app.bench import Log, machine_line
from app.config import Config
from app.paths import asset

PAUSE_AFTER_S = 0.8  # quiet after each reply before the next question


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text", action="store_true",
                        help="ask the language model alone, a fresh conversation per question (no audio)")
    parser.add_argument("--questions", type=int, metavar="N", help="only the first N questions (default: all; 8 "
                        "spread over the kinds with --quick)")
    parser.add_argument("--prompt", metavar="FILE", help="a system prompt to use instead of the configured one")
    parser.add_argument("--report", metavar="FILE", help="also write every question, what was heard and the reply")


def _chosen(args: argparse.Namespace) -> list:
    from app.errors import InputError
    from app.metrics.answers import load_questions

    questions = load_questions(asset("answers/questions.json"))
    if args.questions is not None:
        if not 1 <= args.questions <= len(questions):
            raise InputError(f"--questions: give 1 to {len(questions)}, got {args.questions}")
        return questions[:args.questions]
    return questions[::8] if args.quick else questions


def _config(cfg: Config, args: argparse.Namespace) -> Config:
    from app.config import from_dict
    from app.errors import InputError

    if not args.prompt:
        return cfg
    try:
        prompt = Path(args.prompt).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{args.prompt}: cannot read the prompt ({exc})") from None
    return from_dict({"llm": {"system_prompt": prompt}}, cfg)


def run(cfg: Config, args: argparse.Namespace, log: Log) -> dict:
    cfg = _config(cfg, args)
    questions = _chosen(args)
    rows, extra = (_ask_text if args.text else _ask_spoken)(cfg, questions, log)
    rows_summary = _summary(rows)
    return {"benchmark": "answers", "mode": "text" if args.text else "spoken", "llm": cfg.models.llm_path or
            cfg.models.llm, "prompt": args.prompt or "configured", **rows_summary, **extra,
            "questions": rows}


def _ask_spoken(cfg: Config, questions: list, log: Log) -> tuple[list[dict], dict]:
    from app.bench.soak import rss_mb
    from app.engine_factory import build_engines
    from app.headless.report import build_report
    from app.headless.runner import run_conversation
    from app.headless.script import ScriptTurn, load_turns, user_voice_synthesizer
    from app.metrics.answers import align
    from app.metrics.wer import wer

    log(f"speaking {len(questions)} questions with Kokoro voices")
    script = [ScriptTurn(text=q.text, voice=q.voice, pause_after=PAUSE_AFTER_S) for q in questions]
    turns = load_turns(script, user_voice_synthesizer(cfg))
    engines = build_engines(cfg, log)
    loaded = rss_mb()
    log(f"talking: {len(questions)} questions at real-time pace")
    result = run_conversation(engines, cfg, turns, timeout_s=120 + 60 * len(questions), keep_recording=False)
    after = rss_mb()  # the engines are still loaded
    report = build_report(result)
    records = result.records
    rows = []
    for question, index in zip(questions, align(questions, [r.transcript for r in records])):
        record = records[index] if index is not None else None
        heard = record.transcript if record else ""
        rows.append(_row(question, heard, record.reply if record else "", v2v_ms=(record.stages_ms.get("v2v")
                                                                                    if record else None)))
        rows[-1]["heard_right"] = bool(record) and wer(question.text, heard) <= 0.2
    extra = {"v2v_ms": report["summary"]["v2v"], "turns_recorded": len(records), "notes": result.notes,
             "rss_mb": {"loaded": loaded, "after": after}}
    return rows, extra


def _ask_text(cfg: Config, questions: list, log: Log) -> tuple[list[dict], dict]:
    from app.bench.soak import rss_mb
    from app.config import runtime_settings
    from app.conversation.reply_text import speak_all
    from app.engine_factory import build_llm
    from engines.protocols import Message

    settings = runtime_settings(cfg)
    llm = build_llm(cfg)
    loaded = rss_mb()
    system = Message("system", settings.system_prompt)
    llm.start([system, Message("user", "Hello")], 1).prefill()  # the system prompt in the cache, as a session does
    rows, first_token_ms = [], []
    for i, question in enumerate(questions, 1):
        t0 = time.perf_counter()
        generation = llm.start([system, Message("user", question.text)], settings.session.max_reply_tokens)
        segments, text = speak_all(generation, settings.session.max_spoken_words)
        if text.first_token_at is not None:
            first_token_ms.append((text.first_token_at - t0) * 1000)
        rows.append(_row(question, question.text, " ".join(segments)))
        rows[-1]["heard_right"] = True
        if i % 10 == 0:
            log(f"{i} of {len(questions)} asked")
    from app.metrics.stats import summarize

    return rows, {"first_token_ms": summarize(first_token_ms), "rss_mb": {"loaded": loaded, "after": rss_mb()}}


def _row(question, heard: str, reply: str, v2v_ms: float | None = None) -> dict:
    from app.metrics.answers import correct, has_loop, markup

    return {"id": question.id, "kind": question.kind, "question": question.text, "heard": heard, "reply": reply,
            "correct": bool(reply) and correct(question, reply), "markup": markup(reply), "loop": has_loop(reply),
            "words": len(reply.split()), "v2v_ms": v2v_ms}


def _summary(rows: list[dict]) -> dict:
    from app.metrics.answers import KINDS

    def share(part: list[dict]) -> dict:
        right = sum(r["correct"] for r in part)
        return {"n": len(part), "correct": right, "accuracy": right / len(part) if part else None}

    heard = [r for r in rows if r["heard_right"]]
    answered = [r for r in rows if r["reply"]]
    return {"accuracy": share(rows), "by_kind": {k: share([r for r in rows if r["kind"] == k]) for k in KINDS},
            "accuracy_heard_right": share(heard), "unanswered": len(rows) - len(answered),
            "markup_replies": sum(bool(r["markup"]) for r in rows), "loop_replies": sum(r["loop"] for r in rows),
            "mean_words": sum(r["words"] for r in answered) / len(answered) if answered else None}


def format_report(result: dict) -> str:
    def pct(share: dict) -> str:
        return "-" if share["accuracy"] is None else f"{share['correct']}/{share['n']} ({share['accuracy']:.0%})"

    lines = [f"cadence bench answers ({result['mode']}): {result['llm']}, prompt {result['prompt']}",
             machine_line(result["machine"]),
             f"accuracy: {pct(result['accuracy'])}; heard right by the recognizer: "
             f"{pct(result['accuracy_heard_right'])}; unanswered: {result['unanswered']}",
             "by kind: " + ", ".join(f"{k} {pct(v)}" for k, v in result["by_kind"].items() if v["n"]),
             f"replies with unreadable symbols or markup: {result['markup_replies']}; with repetition loops: "
             f"{result['loop_replies']}; mean spoken length: {result['mean_words'] or 0:.1f} words"]
    if "v2v_ms" in result:
        v = result["v2v_ms"]
        lines.append(f"V2V: P50 {v['p50'] or 0:.0f} ms, P90 {v['p90'] or 0:.0f} ms (n = {v['n']})")
    if "first_token_ms" in result:
        f = result["first_token_ms"]
        lines.append(f"LLM first token (text mode, system prompt cached): P50 {f['p50'] or 0:.0f} ms")
    rss = result["rss_mb"]
    lines.append(f"resident memory of the process: {rss['loaded'] or 0:.0f} MB with the models loaded, "
                 f"{rss['after'] or 0:.0f} MB after the questions")
    for row in result["questions"]:
        if not row["correct"] or row["markup"] or row["loop"]:
            why = "wrong" if not row["correct"] else "markup" if row["markup"] else "loop"
            lines.append(f"  {why}: {row['id']} {row['question']!r} heard {row['heard']!r} -> {row['reply']!r}")
    return "\n".join(lines)
