"""`cadence bench engines` and `cadence bench scheduler` as a user runs them (real models, the tiny smollm2-135m
LLM, `--quick`): the JSON holds every required figure with sensible values; the real-time consumer counts
underruns exactly; bad options fail with one line before any model loads."""
from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

from app.audio.playback import PlaybackBuffer
from app.bench import installed
from app.bench.scheduler import BLOCK, MODES, RATE, RealtimePlayer
from app.commands.bench import SUBCOMMANDS
from app.config import Config
from tests.conftest import run_cli, speech_manifest

SMALL_LLM = ("--set", "models.llm=smollm2-135m")


def positive_summary(summary: dict) -> None:
    assert summary["n"] >= 1, summary
    assert 0 < summary["p50"] <= summary["p90"] <= summary["max"], summary


def run_bench(tmp_path, *args: str) -> tuple[dict, str]:
    out = tmp_path / "bench.json"
    proc = run_cli(*SMALL_LLM, "bench", *args, "--quick", "--json", str(out), timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text(encoding="utf-8")), proc.stdout


@pytest.mark.slow
def test_bench_engines_quick_reports_every_engine(tmp_path):
    data, stdout = run_bench(tmp_path, "engines")
    engines = data["engines"]
    expected = {
        "silero-vad": ["frame_ms"],
        "smart-turn-v3.2": ["call_ms"],
        "whisper-tiny.en": ["finish_ms"],
        "smollm2-135m": ["first_token_cold_ms", "first_token_cached_ms", "tokens_per_s"],
        "piper-joe-medium": ["first_audio_ms", "rtf"],
    }
    if installed("kokoro-82m-int8"):
        expected["kokoro-82m-int8"] = ["first_audio_ms", "rtf"]
    for model_id, metrics in expected.items():
        assert model_id in engines, sorted(engines)
        for metric in metrics:
            positive_summary(engines[model_id]["metrics"][metric])
            assert metric in stdout
        assert model_id in stdout
    assert Config().models.llm not in engines  # --set models.llm replaced the default LLM
    llm = engines["smollm2-135m"]["metrics"]
    assert llm["reused_prompt_tokens"]["p50"] > 0  # the cached-prefix figure really reused the system prompt
    assert llm["first_token_cached_ms"]["p50"] < llm["first_token_cold_ms"]["p50"]
    durations = {row["file"]: float(row["duration_s"]) for row in speech_manifest()}
    asr_clips = engines["whisper-tiny.en"]["clips"]
    assert asr_clips and all(2.5 <= durations[name] <= 3.55 for name in asr_clips), asr_clips
    assert engines["silero-vad"]["metrics"]["frame_ms"]["n"] == 10 * 16000 // 512  # quick: the first 10 s
    assert data["machine"]["cores"] >= 1 and data["machine"]["cpu"] and data["quick"] is True
    assert stdout.startswith("machine: ")


@pytest.mark.slow
def test_bench_scheduler_quick_compares_the_three_modes(tmp_path):
    data, stdout = run_bench(tmp_path, "scheduler", "--prompts", "1")
    modes = data["modes"]
    assert set(modes) == set(MODES)
    for mode in MODES:
        m = modes[mode]
        positive_summary(m["first_audio_ms"])
        positive_summary(m["total_ms"])
        assert isinstance(m["underruns"], int) and m["underruns"] >= 0
        assert m["underrun_gap_ms"] >= 0 and (m["underruns"] > 0) == (m["underrun_gap_ms"] > 0)
        (reply,) = m["replies"]
        assert reply["audio_s"] > 0.5 and reply["text"]
        # the audio is consumed at real-time pace: first to last sample lasts at least as long as the audio
        assert reply["total_ms"] - reply["first_audio_ms"] >= reply["audio_s"] * 1000 - 40
        assert mode in stdout
    assert modes["interleaved"]["lanes"] == modes["sequential"]["lanes"] == ["device"]
    assert {"device/llm", "device/tts"} <= set(modes["concurrent"]["lanes"])  # stages competing for the cores
    p50 = {mode: modes[mode]["first_audio_ms"]["p50"] for mode in MODES}
    assert data["ratio_first_audio_interleaved_vs_concurrent"] == pytest.approx(p50["interleaved"] / p50["concurrent"])
    texts = {modes[mode]["replies"][0]["text"] for mode in MODES}
    assert len(texts) == 1, texts  # greedy: the same reply in every mode, so the modes are comparable
    assert "interleaved / concurrent" in stdout


def test_player_counts_gaps_between_first_and_last_sample_only():
    playback = PlaybackBuffer(RATE)
    player = RealtimePlayer(playback)  # driven by hand: no thread, no clock
    track = player.track(7)
    now = [0.0]

    def tick(push: int = 0) -> None:
        if push:
            playback.push(7, np.full(push, 0.1, np.float32), RATE)
        _, notes = playback.read(BLOCK)
        player._account(track, notes, now[0])
        now[0] += BLOCK / RATE

    tick()  # nothing yet: silence before the first audio is not an underrun
    tick(push=700)  # first audio: 512 samples
    assert track.first_at == 1 * BLOCK / RATE and track.underruns == 0
    tick()  # 188 samples, then dry
    tick()  # a whole dry block
    tick(push=600)  # audio again: one gap of (512 - 188) + 512 samples
    assert track.underruns == 1 and track.gap_samples == 512 - 188 + 512
    tick()  # the last 88 samples, then dry (the end of the reply, not a gap)
    track.producing_done = True
    tick()
    assert track.done.is_set()
    assert track.underruns == 1 and track.gap_samples == 836
    assert track.last_at == pytest.approx(5 * BLOCK / RATE + 88 / RATE)


def test_every_bench_subcommand_module_has_the_entry_points():
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        assert hasattr(module, "register") or (callable(module.run) and callable(module.format_report)), name
        assert help_text
        assert run_cli("bench", name, "--help", timeout=60).returncode == 0


@pytest.mark.parametrize("args, needle", [
    (("bench", "scheduler", "--prompts", "0"), "--prompts"),
    (("bench", "engines", "--only", "vad,nope"), "nope"),
    (("bench", "engines", "--json", "/nonexistent-dir/x.json"), "does not exist"),
    (("bench", "answers", "--questions", "0"), "--questions"),
    (("bench", "answers", "--prompt", "/nonexistent-dir/prompt.txt"), "cannot read the prompt"),
    (("bench", "remote", "--rtt-ms", "20,fast"), "--rtt-ms"),
    (("bench", "remote", "--sessions", "0"), "--sessions"),
    (("bench", "gpu", "--device", "cuda"), "cadence doctor --compute cuda"),
    (("bench", "gpu", "--dry-run", "--gguf", "q=/nonexistent-dir/q.gguf"), "no such file"),
])
def test_bad_options_fail_with_one_line_before_loading_models(args, needle):
    proc = run_cli(*args, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cadence: error:") and needle in lines[0], proc.stderr
    assert "[bench:" not in proc.stderr  # nothing was loaded


@pytest.mark.slow
def test_bench_answers_text_mode_scores_every_question(tmp_path):
    data, stdout = run_bench(tmp_path, "answers", "--text")  # --quick: 9 questions spread over the kinds
    rows = data["questions"]
    assert data["mode"] == "text" and len(rows) == data["accuracy"]["n"] == 9
    assert {row["kind"] for row in rows} == {"fact", "math", "units", "howto", "hedge"}
    assert data["accuracy"]["correct"] == sum(row["correct"] for row in rows)
    assert sum(v["n"] for v in data["by_kind"].values()) == 9
    for row in rows:
        assert row["reply"] and row["words"] == len(row["reply"].split())
        assert not any(ch.isdigit() for ch in row["reply"]), row  # scored in the form it was spoken
    assert data["rss_mb"]["loaded"] > 50 and "accuracy:" in stdout and data["machine"]["cpu"]


@pytest.mark.slow
def test_bench_answers_asks_through_the_spoken_session(tmp_path):
    out = tmp_path / "answers.json"
    proc = run_cli(*SMALL_LLM, "bench", "answers", "--questions", "3", "--json", str(out), timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    rows = data["questions"]
    assert data["mode"] == "spoken" and len(rows) == 3 and data["unanswered"] == 0, data["notes"]
    assert all(row["heard_right"] for row in rows), [row["heard"] for row in rows]  # Kokoro voices, clearly heard
    assert data["v2v_ms"]["n"] == 3 and all(row["v2v_ms"] > 0 for row in rows)
    assert all(row["reply"] and not any(ch.isdigit() for ch in row["reply"]) for row in rows)


def test_bench_turns_counts_takeovers_and_waits_per_rule():
    """The rule evaluation, on hand-made features: a hesitation heard as a question that Smart Turn calls complete
    without being sure (0.85) is taken over by the rules before and not by the default (a 1.2 s wait); a complete
    question in a flat voice (Smart Turn 0.02, text -0.08) waits 1.5 s under the oldest rule and 0.3 s under the
    default."""
    import numpy as np

    from app.bench.turns import RULES, Sample, _evaluate
    from app.conversation.turn_rule import TurnSettings

    samples = [Sample("kokoro", "mid", 0.6, np.zeros(0), "What is that?", 0.85, -0.56),
               Sample("kokoro", "mid", 0.8, np.zeros(0), "What is the", 0.97, -5.0),
               Sample("kokoro", "complete", np.inf, np.zeros(0), "How many continents are there?", 0.02, -0.08)]
    before = _evaluate(samples, TurnSettings(), RULES["before (disagree waits 1.5 s)"])["kokoro"]
    default = _evaluate(samples, TurnSettings(), {})["kokoro"]
    assert (before["takeovers"], before["mid_pauses"], before["wait_mean_s"]) == (1, 2, 1.5)
    previous = _evaluate(samples, TurnSettings(), RULES["text >= -0.2 trusted after 0.3 s"])["kokoro"]
    assert (previous["takeovers"], previous["wait_mean_s"], previous["waited_1s_or_more"]) == (1, 0.3, 0)
    assert (default["takeovers"], default["wait_mean_s"], default["waited_1s_or_more"]) == (0, 0.3, 0)
    assert RULES["... and unsure waits 1.2 s"] == {} and TurnSettings().turn_sure_threshold == 0.9


@pytest.mark.slow
def test_bench_turns_measures_labelled_pauses(tmp_path):
    data, stdout = run_bench(tmp_path, "turns")  # --quick: 6 questions per voice
    assert data["samples"] > 40 and set(data["rules"]) >= {"before (disagree waits 1.5 s)"}
    for rule in data["rules"].values():
        assert {"real", "kokoro", "preamble"} <= set(rule)
        assert all(0 <= r["takeovers"] <= r["mid_pauses"] for r in rule.values())
    labels = {(f["source"], f["label"]) for f in data["features"]}
    assert {("real", "complete"), ("real", "mid"), ("kokoro", "complete"), ("kokoro", "mid")} <= labels
    assert all(0 <= f["audio_p"] <= 1 for f in data["features"])
    assert "takeovers" in stdout and data["machine"]["cpu"]


def test_the_delay_relay_adds_its_delay_each_way_and_keeps_the_bytes():
    import socket
    import threading
    import time

    from app.bench.delay_relay import DelayRelay

    server = socket.create_server(("127.0.0.1", 0))

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    relay = DelayRelay(server.getsockname()[1], one_way_ms=40)
    try:
        with socket.create_connection(("127.0.0.1", relay.port)) as client:
            t0 = time.perf_counter()
            client.sendall(b"hello " * 1000)
            got = b""
            while len(got) < 6000:
                got += client.recv(65536)
            rtt = time.perf_counter() - t0
        assert got == b"hello " * 1000
        assert 0.08 <= rtt < 0.5, rtt  # 2 x 40 ms, plus scheduling
    finally:
        relay.close()
        server.close()
