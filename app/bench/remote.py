"""`cadence bench remote`: what answering through an OpenAI-compatible server costs. It starts llama-cpp-python's
server (`server` extra) on 127.0.0.1 with the configured catalog LLM and speaks the questions of `bench
conversation` (1) with the model in-process, (2) through the server, (3) through the server with each added round
trip of `--rtt-ms` (a delaying relay, app/bench/delay_relay.py), and (4) from `--sessions` headless sessions at once
against that one server. V2V P50 / P90 of each and its ratio to the in-process run, all in one process, one after
the other. `--text-score`: the server computes log-probabilities (llama-cpp-python's `logits_all`, which slows
its every prompt) and the remote runs read the text end-of-turn score from them (ChatML, as the catalog models
use); without it the audio decides the end of a remote turn."""
from __future__ import annotations

import argparse
import threading

from app.bench import Log
from app.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--turns", type=int, default=10, help="questions per run (1-20; default 10, 3 with --quick)")
    parser.add_argument("--rtt-ms", default="20,50", help="added round trips to measure, comma-separated (default "
                                                          "20,50; 0 or empty: none)")
    parser.add_argument("--text-score", action="store_true",
                        help="the server computes log-probabilities (llama-cpp-python's logits_all, slower prompts) "
                             "and Cadence reads the text end-of-turn score from them")
    parser.add_argument("--server-threads", type=int, default=None,
                        help="the server's llama.cpp threads (default llm.n_threads)")
    parser.add_argument("--sessions", type=int, default=2, help="sessions at once against the server (default 2; "
                                                                "1: skip that run)")


def _v2v(report: dict) -> dict:
    s = report["summary"]["v2v"]
    return {"p50": s["p50"], "p90": s["p90"], "n": s["n"], "answered": len(report["turns"]),
            "llm_first_token_p50": report["summary"]["llm_first_token"]["p50"]}


def run(cfg: Config, args: argparse.Namespace, log: Log) -> dict:
    from app.bench.delay_relay import DelayRelay
    from app.config import from_dict
    from app.engine_factory import build_engines
    from app.errors import InputError
    from app.headless.report import build_report
    from app.headless.runner import run_conversation
    from app.headless.script import load_turns, parse_script
    from app.llama_server import LlamaServer
    from app.paths import asset

    count = 3 if args.quick and args.turns == 10 else args.turns
    if not 1 <= count <= 20:
        raise InputError(f"--turns: give 1 to 20, got {count}")
    if args.sessions < 1 or args.sessions > 8:
        raise InputError(f"--sessions: give 1 to 8, got {args.sessions}")
    try:
        rtts = [float(x) for x in str(args.rtt_ms).split(",") if x.strip() and float(x) > 0]
    except ValueError:
        raise InputError(f"--rtt-ms: expected numbers separated by commas, got {args.rtt_ms!r}") from None
    if cfg.llm.base_url:
        raise InputError("bench remote starts its own server: unset llm.base_url")
    turns = load_turns(parse_script(asset("bench/conversation.json"))[:count], None)
    timeout = 120 + 60 * count
    runs: dict[str, dict] = {}

    log(f"loading the engines; talking: {count} questions, {cfg.models.llm} in-process")
    local = build_engines(cfg, log)
    runs["in-process"] = _v2v(build_report(run_conversation(local, cfg, turns, timeout_s=timeout)))
    close = getattr(local.llm, "close", None)
    if close is not None:  # its memory back before the server loads the same model
        close()

    log(f"starting llama_cpp.server with {cfg.models.llm}")
    threads = args.server_threads or cfg.llm.n_threads
    with LlamaServer(cfg.models.llm, n_ctx=cfg.llm.n_ctx, n_threads=threads, alias="cadence",
                     logprobs=args.text_score) as server:
        def remote_cfg(url: str) -> Config:
            return from_dict({"llm": {"base_url": url, "remote_model": "cadence",
                                      "remote_chat_template": "chatml" if args.text_score else ""}}, cfg)

        def engines_for(url: str):
            from app.engine_factory import build_llm

            c = remote_cfg(url)
            return c, type(local)(local.vad, local.turn, local.asr, build_llm(c), local.tts, names=local.names)

        cancel = _cancel_stop(server.base_url)
        log("talking through the server (loopback)")
        c, engines = engines_for(server.base_url)
        runs["remote, loopback"] = _v2v(build_report(run_conversation(engines, c, turns, timeout_s=timeout)))
        for rtt in rtts:
            relay = DelayRelay(server.port, rtt / 2)
            try:
                log(f"talking through the server with {rtt:g} ms added round trip")
                c, engines = engines_for(relay.url())
                runs[f"remote, +{rtt:g} ms RTT"] = _v2v(build_report(run_conversation(engines, c, turns,
                                                                                      timeout_s=timeout)))
            finally:
                relay.close()
        if args.sessions > 1:
            log(f"talking: {args.sessions} sessions at once against the one server")
            c = remote_cfg(server.base_url)
            results: dict[int, dict] = {}

            def one(i: int) -> None:
                results[i] = _v2v(build_report(run_conversation(build_engines(c), c, turns, timeout_s=timeout)))

            workers = [threading.Thread(target=one, args=(i,)) for i in range(args.sessions)]
            for t in workers:
                t.start()
            for t in workers:
                t.join()
            for i in sorted(results):
                runs[f"remote, {args.sessions} sessions: #{i + 1}"] = results[i]
    base = runs["in-process"]["p50"]
    for r in runs.values():
        r["ratio_p50"] = round(r["p50"] / base, 2) if r["p50"] and base else None
    return {"model": cfg.models.llm, "turns_asked": count, "runs": runs, "cancel": cancel, "server_threads": threads,
            "text_score": args.text_score}


def _cancel_stop(url: str) -> dict:
    """How soon the server stops a cancelled reply: a new request's first token right after a cancel (the server
    runs one request at a time, so it waits for whatever the server still does) against the same on an idle
    server."""
    import time

    from engines.llm_remote import RemoteGenerator
    from engines.protocols import Message

    gen = RemoteGenerator(url, "cadence")

    def first_token_ms() -> float:
        probe = gen.start([Message("user", "Say hi.")], 2)
        t0 = time.perf_counter()
        probe.step(1)
        probe.cancel()
        return (time.perf_counter() - t0) * 1000

    first_token_ms()  # the prompt in the server's cache
    idle = first_token_ms()
    long = gen.start([Message("system", "You are a voice assistant."),
                      Message("user", "List the numbers from one to fifty as words.")], 400)
    long.step(5)
    long.cancel()
    return {"idle_first_token_ms": round(idle), "after_cancel_first_token_ms": round(first_token_ms())}


def format_report(result: dict) -> str:
    from app.bench import machine_line

    lines = [f"cadence bench remote: {result['model']}, {result['turns_asked']} spoken questions per run; the "
             f"server on this machine with {result['server_threads']} llama.cpp thread(s); text score from the server: "
             + ("yes (logits_all on)" if result["text_score"] else "no (the audio decides)"),
             machine_line(result["machine"]),
             f"{'run':34}{'answered':>9}{'LLM 1st':>9}{'V2V P50':>9}{'P90':>8}{'x local':>9}"]
    for name, r in result["runs"].items():
        cell = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
        lines.append(f"{name:34}{r['answered']:>9}{cell(r['llm_first_token_p50']):>9}{cell(r['p50']):>9}"
                     f"{cell(r['p90']):>8}{(r['ratio_p50'] or 0):>9.2f}")
    lines.append("ms; x local = V2V P50 / the in-process run's V2V P50")
    c = result["cancel"]
    lines.append(f"a cancelled reply stops on the server: a new request's first token "
                 f"{c['after_cancel_first_token_ms']} ms right after a cancel, "
                 f"{c['idle_first_token_ms']} ms on an idle server")
    return "\n".join(lines)
