"""`cadence bench soak --turns N`: one long headless session (one session, one scheduler) cycling the spoken bench
questions at real-time pace, with short replies. Reports resident memory growth after the warm-up turns, the V2V
drift from the first to the last 20 turns, and whether the LLM's prompt stayed within its context window with the
system prompt kept first. Figures and counts only: no words of the conversation are kept in the result."""
from __future__ import annotations

import argparse
import os
import time

from app.bench import Log, machine_line
from app.config import Config

GOALS = {"rss_growth_mb": 50.0, "v2v_p50_drift_pct": 10.0}  # issue 7
WINDOW = 20  # turns compared at the start and at the end
PAUSE_AFTER_S = 0.5  # the simulated user speaks again this long after the agent went quiet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--turns", type=int, default=200, help="user turns in the one session (default 200, "
                                                               "10 with --quick)")
    parser.add_argument("--reply-tokens", type=int, default=24, metavar="N",
                        help="longest reply in tokens, so that many turns fit in little time (default 24)")


def rss_mb() -> float | None:
    """This process's current resident memory in MB (/proc/self/statm), or None where there is no /proc."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class SoakProbe:
    """Watches the session: RSS and the history's size after every answer, the prompt size of every prefill."""

    def __init__(self) -> None:
        self.session = None
        self.rss: list[float | None] = []  # after each assistant message, in order
        self.history_chars: list[int] = []  # the history's size (system prompt included) after each answer
        self.prefills: dict[int, tuple[int, int]] = {}  # turn -> (prompt tokens, reused tokens) of its last prefill

    def attach(self, session) -> None:
        from app.conversation import actions as a

        self.session = session

        def on_item(item) -> None:  # notified before the action is applied
            if isinstance(item, a.AppendHistory) and item.role == "assistant":
                self.rss.append(rss_mb())
            elif isinstance(item, a.AppendHistory) and item.role == "user":  # what the last answer left
                self.history_chars.append(session.history.cost(per_message=12))

        def on_span(span) -> None:
            if span.stage == "llm" and span.label == "prefill" and span.status == "ok" and "prompt_tokens" in span.meta:
                self.prefills[span.turn] = (int(span.meta["prompt_tokens"]), int(span.meta.get("reused_tokens", 0)))

        session.subscribe(on_item)
        session.scheduler.spans.subscribe(on_span)


def _cycle_turns(count: int):
    """The 20 bench questions, cycled to `count` turns (each WAV read once, its samples shared by every repeat)."""
    from dataclasses import replace

    from app.headless.script import load_turns, parse_script
    from app.paths import asset

    questions = load_turns(parse_script(asset("bench/conversation.json")), None)
    return [replace(questions[i % len(questions)], pause_after_s=PAUSE_AFTER_S, barge_in_s=None)
            for i in range(count)]


def run(cfg: Config, args: argparse.Namespace, log: Log) -> dict:

    from app.config import from_dict, runtime_settings, system_prompt
    from app.engine_factory import build_engines
    from app.errors import InputError
    from app.headless.runner import run_conversation
    from app.metrics.stats import summarize
    from app.metrics.turns import STAGES

    count = 10 if args.quick and args.turns == 200 else args.turns
    if count < 2:
        raise InputError(f"--turns: give at least 2, got {count}")
    if not 8 <= args.reply_tokens <= 4096:
        raise InputError(f"--reply-tokens: give 8 to 4096, got {args.reply_tokens}")
    cfg = from_dict({"llm": {"max_reply_tokens": args.reply_tokens}}, cfg)  # checked like any setting
    turns = _cycle_turns(count)
    engines = build_engines(cfg, log)
    n_ctx = int(getattr(engines.llm, "n_ctx", cfg.llm.n_ctx))
    budget = runtime_settings(cfg).session.history_chars
    probe = SoakProbe()
    rss_before = rss_mb()
    log(f"soak: {count} turns in one session at real-time pace, replies of at most {args.reply_tokens} tokens")
    t0 = time.perf_counter()
    result = run_conversation(engines, cfg, turns, timeout_s=120 + 40 * count, on_session=probe.attach,
                              keep_recording=False)
    wall_s = time.perf_counter() - t0

    records = result.records
    v2v = [r.stages_ms.get("v2v") for r in records]
    window = min(WINDOW, max(1, len(records) // 2))
    first, last = summarize(v2v[:window]), summarize(v2v[-window:])
    stages = {}  # which stage the drift comes from: P50 of each stage in both windows
    for stage in (s for s in STAGES if s != "v2v"):
        values = [r.stages_ms.get(stage) for r in records]
        stages[stage] = {"first": summarize(values[:window])["p50"], "last": summarize(values[-window:])["p50"]}
    drift = None
    if first["p50"] and last["p50"] is not None:
        drift = (last["p50"] - first["p50"]) / first["p50"] * 100

    warm = min(WINDOW, max(1, len(probe.rss) // 3))  # RSS growth is measured from the end of the warm-up turns
    samples = [x for x in probe.rss if x is not None]
    rss_warm = probe.rss[warm - 1] if len(probe.rss) >= warm else None
    rss_end = probe.rss[-1] if probe.rss else None
    growth = rss_end - rss_warm if rss_warm is not None and rss_end is not None else None

    prompts = [p for p, _ in probe.prefills.values()]
    evaluated = [probe.prefills[r.turn][0] - probe.prefills[r.turn][1] if r.turn in probe.prefills else None
                 for r in records]
    largest = max(prompts) if prompts else None
    history = result.history
    system_first = bool(history) and history[0].get("role") == "system" and history[0].get("content") == \
        system_prompt(cfg)
    kept_user = sum(1 for m in history if m.get("role") == "user")
    answered = sum(1 for r in records if r.reply)
    spans = probe.session.scheduler.spans if probe.session else None
    out = {
        "turns_asked": count, "turns_answered": answered, "turns_recorded": len(records),
        "wall_s": wall_s, "wall_s_per_turn": wall_s / count, "reply_tokens": args.reply_tokens,
        "mode": cfg.scheduler.mode, "engines": dict(result.engines),
        "rss_mb": {"before_session": rss_before, "warm_up_turns": warm, "after_warm_up": rss_warm,
                   "end": rss_end, "max": max(samples) if samples else None, "growth": growth,
                   "per_turn": probe.rss},
        "v2v_ms": {"window": window, "first": first, "last": last, "p50_drift_pct": drift, "per_turn": v2v},
        "stages_ms_p50": stages,
        "prompt_tokens": {"largest": largest, "n_ctx": n_ctx,
                          "largest_plus_reply": None if largest is None else largest + args.reply_tokens,
                          "evaluated_first_p50": summarize(evaluated[:window])["p50"],
                          "evaluated_last_p50": summarize(evaluated[-window:])["p50"],
                          "evaluated_per_turn": evaluated},
        "history": {"budget_chars": budget, "largest_chars": max(probe.history_chars, default=0),
                    "messages_at_end": len(history), "user_turns_kept": kept_user,
                    "user_turns_dropped": max(0, answered - kept_user), "system_prompt_first": system_first},
        "recording_s_kept": len(result.stereo) / result.rate,  # 0: a soak keeps no recording
        "span_log": {"retained": len(spans) if spans else 0, "capacity": spans.capacity if spans else 0},
        "goals": GOALS, "notes": list(result.notes),
    }
    out["pass"] = {
        "rss_growth": growth is not None and growth < GOALS["rss_growth_mb"],
        "v2v_p50_drift": drift is not None and drift < GOALS["v2v_p50_drift_pct"],
        "context_within_window": largest is not None and largest + args.reply_tokens <= n_ctx,
        "system_prompt_first": system_first,
    }
    return out


def _num(value: float | None, fmt: str = ".0f") -> str:
    return "-" if value is None else format(value, fmt)


def format_report(result: dict) -> str:
    rss, v2v, prompt, hist = result["rss_mb"], result["v2v_ms"], result["prompt_tokens"], result["history"]
    first, last, w = v2v["first"], v2v["last"], v2v["window"]
    ok = result["pass"]

    def verdict(key: str) -> str:
        return "PASS" if ok[key] else "FAIL"

    lines = [
        f"cadence bench soak: {result['turns_answered']} of {result['turns_asked']} turns answered in one session, "
        f"{result['wall_s'] / 60:.1f} min ({result['wall_s_per_turn']:.1f} s a turn), replies <= "
        f"{result['reply_tokens']} tokens, mode {result['mode']}; "
        + ", ".join(f"{k}={v}" for k, v in result["engines"].items()),
        machine_line(result["machine"]),
        f"resident memory: {_num(rss['before_session'])} MB before the session, {_num(rss['after_warm_up'])} MB "
        f"after {rss['warm_up_turns']} warm-up turn(s), {_num(rss['end'])} MB at the end (max {_num(rss['max'])}): "
        f"growth {_num(rss['growth'], '+.1f')} MB",
        f"V2V first {w} turns: P50 {_num(first['p50'])} ms, P90 {_num(first['p90'])} ms; last {w} turns: "
        f"P50 {_num(last['p50'])} ms, P90 {_num(last['p90'])} ms; P50 drift {_num(v2v['p50_drift_pct'], '+.1f')} %",
        "stages P50 first / last: " + ", ".join(f"{k} {_num(v['first'])} / {_num(v['last'])} ms"
                                                 for k, v in result["stages_ms_p50"].items()),
        f"LLM prompt: largest {_num(prompt['largest'])} tokens (+ {result['reply_tokens']} reply) of a "
        f"{prompt['n_ctx']}-token window; tokens evaluated per turn (not reused from the cache) P50 "
        f"{_num(prompt['evaluated_first_p50'])} first {w}, {_num(prompt['evaluated_last_p50'])} last {w}",
        f"history: budget {hist['budget_chars']} chars, largest {hist['largest_chars']}; at the end "
        f"{hist['messages_at_end']} messages, {hist['user_turns_kept']} user turns kept, "
        f"{hist['user_turns_dropped']} dropped; system prompt first: {'yes' if hist['system_prompt_first'] else 'no'}",
        f"span log: {result['span_log']['retained']} spans retained (ring of {result['span_log']['capacity']})",
        f"{verdict('rss_growth')}: RSS growth < {result['goals']['rss_growth_mb']:.0f} MB "
        f"({_num(rss['growth'], '+.1f')} MB)",
        f"{verdict('v2v_p50_drift')}: P50 V2V drift < {result['goals']['v2v_p50_drift_pct']:.0f} % "
        f"({_num(v2v['p50_drift_pct'], '+.1f')} %)",
        f"{verdict('context_within_window')}: largest prompt + reply within the context window "
        f"({_num(prompt['largest_plus_reply'])} <= {prompt['n_ctx']} tokens)",
        f"{verdict('system_prompt_first')}: system prompt still first in the history",
    ]
    lines += [f"note: {note}" for note in result["notes"]]
    return "\n".join(lines)
