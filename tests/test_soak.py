"""`cadence bench soak` as a user runs it, kept short: six spoken turns in one session with the tiny LLM and a small
context window, so the history is trimmed during the run. The report holds memory, V2V and context figures, keeps
the system prompt first and the prompt within the window, and holds no words of the conversation. Every summary
figure and verdict is recomputed here from the report's own per-turn data, and the printed report shows the same
figures as the JSON."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from app.bench.soak import rss_mb
from app.config import load, runtime_settings
from app.paths import asset
from tests.conftest import run_cli

TURNS = 6
N_CTX = 512  # history budget (512 - 16 - 64) * 3 = 1296 chars, the ~900-char system prompt included: trimmed early


def summary(values: list) -> dict:
    """n / min / P50 / P90 / max of the values that are not None (numpy's default percentiles), computed here."""
    data = [v for v in values if v is not None]
    if not data:
        return {"n": 0, "min": None, "p50": None, "p90": None, "max": None}
    return {"n": len(data), "min": min(data), "p50": float(np.percentile(data, 50)),
            "p90": float(np.percentile(data, 90)), "max": max(data)}


def assert_figures_follow_from_the_raw_data(data: dict, stdout: str) -> None:
    """The report's summary figures and verdicts, recomputed from its per-turn lists, and its printed lines."""
    rss, v2v, prompt, history, goals = data["rss_mb"], data["v2v_ms"], data["prompt_tokens"], data["history"], \
        data["goals"]
    samples, warm = rss["per_turn"], rss["warm_up_turns"]
    assert rss["after_warm_up"] == samples[warm - 1] and rss["end"] == samples[-1], rss
    assert rss["max"] == max(x for x in samples if x is not None), rss
    assert rss["growth"] == pytest.approx(samples[-1] - samples[warm - 1]), rss

    w, per_turn = v2v["window"], v2v["per_turn"]
    assert len(per_turn) == data["turns_recorded"] == len(prompt["evaluated_per_turn"])
    for key, part in (("first", per_turn[:w]), ("last", per_turn[-w:])):
        assert v2v[key] == pytest.approx(summary(part)), (key, v2v[key], part)
    first, last = summary(per_turn[:w])["p50"], summary(per_turn[-w:])["p50"]
    assert v2v["p50_drift_pct"] == pytest.approx((last - first) / first * 100), (v2v, per_turn)

    evaluated = prompt["evaluated_per_turn"]
    assert prompt["evaluated_first_p50"] == pytest.approx(summary(evaluated[:w])["p50"]), prompt
    assert prompt["evaluated_last_p50"] == pytest.approx(summary(evaluated[-w:])["p50"]), prompt
    assert prompt["largest_plus_reply"] == prompt["largest"] + data["reply_tokens"], prompt
    assert history["user_turns_dropped"] == max(0, data["turns_answered"] - history["user_turns_kept"]), history
    assert data["wall_s_per_turn"] == pytest.approx(data["wall_s"] / data["turns_asked"])

    verdicts = {"rss_growth": rss["growth"] < goals["rss_growth_mb"],
                "v2v_p50_drift": v2v["p50_drift_pct"] < goals["v2v_p50_drift_pct"],
                "context_within_window": prompt["largest_plus_reply"] <= prompt["n_ctx"],
                "system_prompt_first": history["system_prompt_first"]}
    assert data["pass"] == verdicts, (data["pass"], verdicts)

    # the printed report: the JSON's figures, to the digits it prints
    for line in (f"growth {rss['growth']:+.1f} MB",
                 f"V2V first {w} turns: P50 {v2v['first']['p50']:.0f} ms, P90 {v2v['first']['p90']:.0f} ms; "
                 f"last {w} turns: P50 {v2v['last']['p50']:.0f} ms, P90 {v2v['last']['p90']:.0f} ms; "
                 f"P50 drift {v2v['p50_drift_pct']:+.1f} %",
                 f"{'PASS' if verdicts['rss_growth'] else 'FAIL'}: RSS growth < {goals['rss_growth_mb']:.0f} MB",
                 f"{'PASS' if verdicts['v2v_p50_drift'] else 'FAIL'}: P50 V2V drift",
                 f"({prompt['largest_plus_reply']} <= {prompt['n_ctx']} tokens)"):
        assert line in stdout, (line, stdout)


def test_rss_is_this_process_resident_memory():
    now = rss_mb()
    assert now is not None and 10 < now < 64_000
    import mmap

    ballast = mmap.mmap(-1, 64 * 2**20)  # 64 MB of fresh pages (never memory the allocator already holds), touched
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    deadline = time.monotonic() + 2.0  # the kernel folds per-thread counters into statm now and then
    while rss_mb() - now <= 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rss_mb() - now > 50
    ballast.close()


@pytest.mark.slow
def test_bench_soak_short_run_trims_history_and_reports_every_figure(tmp_path):
    out = tmp_path / "soak.json"
    proc = run_cli("--set", "models.llm=smollm2-135m", "--set", f"llm.n_ctx={N_CTX}",
                   "--set", "llm.max_reply_tokens=16", "bench", "soak",
                   "--turns", str(TURNS), "--reply-tokens", "16", "--json", str(out), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["turns_asked"] == TURNS and data["turns_answered"] >= TURNS - 1, data["notes"]
    assert data["recording_s_kept"] == 0  # a long soak must not grow a recording

    rss = data["rss_mb"]
    assert len(rss["per_turn"]) == data["turns_recorded"]
    assert all(50 < x < 16_000 for x in rss["per_turn"] + [rss["before_session"]]), rss
    assert rss["warm_up_turns"] == max(1, len(rss["per_turn"]) // 3)
    assert rss["growth"] == pytest.approx(rss["end"] - rss["after_warm_up"])

    v2v = data["v2v_ms"]
    assert v2v["window"] == data["turns_recorded"] // 2
    for summary in (v2v["first"], v2v["last"]):
        assert summary["n"] >= 2 and 0 < summary["p50"] <= summary["p90"] < 60_000, summary  # loose: a busy machine
    assert v2v["p50_drift_pct"] == pytest.approx((v2v["last"]["p50"] / v2v["first"]["p50"] - 1) * 100)
    stages = data["stages_ms_p50"]  # where a drift comes from
    assert set(stages) == {"asr", "turn", "llm_first_token", "tts_first_audio"}
    assert all(v["first"] is not None and v["first"] > 0 for v in stages.values()), stages
    assert "stages P50 first / last: asr " in proc.stdout

    prompt, history = data["prompt_tokens"], data["history"]
    assert prompt["n_ctx"] == N_CTX and 0 < prompt["largest"] < prompt["largest_plus_reply"] <= N_CTX
    settings = runtime_settings(load(None, [f"llm.n_ctx={N_CTX}", "llm.max_reply_tokens=16"]))
    assert history["budget_chars"] == settings.session.history_chars  # what the window holds: ~3 chars a token
    assert 0 < history["largest_chars"] <= history["budget_chars"]
    assert history["user_turns_dropped"] >= 1, history  # the history was trimmed during the run ...
    assert history["system_prompt_first"] is True  # ... and kept the system prompt first
    assert data["pass"]["context_within_window"] and data["pass"]["system_prompt_first"]

    verdicts = [line for line in proc.stdout.splitlines() if line.startswith(("PASS: ", "FAIL: "))]
    assert len(verdicts) == 4, proc.stdout
    assert_figures_follow_from_the_raw_data(data, proc.stdout)
    assert "PASS: system prompt still first in the history" in verdicts
    assert "resident memory:" in proc.stdout and "P50 drift" in proc.stdout

    # privacy: the report holds figures and counts, not what was said
    report = (out.read_text(encoding="utf-8") + proc.stdout).lower()
    questions = json.loads(asset("bench/questions.json").read_text(encoding="utf-8"))
    assert not [q["text"] for q in questions if q["text"].lower()[:24] in report]


@pytest.mark.parametrize("args, needle", [
    (("--turns", "1"), "--turns"),
    (("--reply-tokens", "2"), "--reply-tokens"),
])
def test_bad_soak_options_fail_with_one_line_before_loading_models(args, needle):
    proc = run_cli("bench", "soak", *args, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cadence: error:") and needle in lines[0], proc.stderr
    assert "[bench:" not in proc.stderr
