"""Echo end to end, headless, real engines and real recordings: the agent's own voice comes back into the
microphone through a simulated speaker path (-20 dB, 60-150 ms). With cancellation on, a multi-turn conversation
has no self-interruption and the right transcripts, and a person talking over the reply is still understood;
with cancellation off the same echo makes the agent interrupt itself (so these tests can fail)."""
from __future__ import annotations

import json

import pytest

from app.audio.echo_path import EchoPath
from app.config import Config, from_dict
from app.headless.script import UserTurn
from engines.audio_io import read_audio
from tests.conftest import ROOT, SPEECH, run_cli, speech_manifest
from tests.wer import clip_limit, wer

pytestmark = pytest.mark.slow
CLIPS = ["en_goforward.wav", "en_LJ001-0008.wav", "en_arctic_a0024.wav"]


def reference(name: str) -> str:
    return next(r["transcript"] for r in speech_manifest() if r["file"] == name)


@pytest.fixture(scope="module")
def engines():
    from app.engine_factory import build_engines

    return build_engines(Config())


def converse(engines, clips, echo: EchoPath, cancel: bool, timeout_s: float, max_tokens: int = 48,
             barge_in: float | None = None):
    from app.headless.runner import run_conversation

    cfg = from_dict({"llm": {"max_reply_tokens": max_tokens}, "audio": {"echo_cancellation": cancel}})
    turns = [UserTurn(read_audio(c if str(c).startswith("/") else SPEECH / c), 1.0,
                      barge_in_s=barge_in if i else None) for i, c in enumerate(clips)]
    return run_conversation(engines, cfg, turns, timeout_s=timeout_s, echo=echo)


@pytest.mark.parametrize("echo", [EchoPath(-20.0, 60.0), EchoPath(-20.0, 150.0, reverb=True)])
def test_no_self_interruption_with_cancellation(engines, echo):
    result = converse(engines, CLIPS, echo, cancel=True, timeout_s=240)
    assert result.agent_paused == 0, "the agent heard itself"
    assert len(result.records) == len(CLIPS), [r.transcript for r in result.records]
    for record, clip in zip(result.records, CLIPS):
        assert not record.interrupted and record.reply
        assert wer(reference(clip), record.transcript) <= clip_limit(reference(clip), 0.2), record.transcript
    assert not result.notes
    assert result.echo.delay_ms == pytest.approx(echo.delay_ms + 32.0, abs=5.0)  # the estimate the UI shows


def test_without_cancellation_the_agent_hears_itself(engines):
    result = converse(engines, CLIPS[:1], EchoPath(-20.0, 60.0), cancel=False, timeout_s=40)
    assert result.echo is None
    assert result.agent_paused > 0 or len(result.records) > 1, "the echo went unnoticed: this test cannot fail"


def test_barge_in_over_the_echo_is_heard_and_transcribed(engines):
    question = ROOT / "assets/bench/q05_long.wav"
    interruption = "en_LJ001-0006.wav"
    result = converse(engines, [str(question), interruption], EchoPath(-20.0, 100.0, reverb=True), cancel=True,
                      timeout_s=240, max_tokens=120, barge_in=1.0)
    first, second = result.records[0], result.records[1]
    assert first.interrupted, "the user's barge-in over the echo was not heard"
    assert first.barge_in_ms is not None and first.barge_in_ms <= 120
    assert wer(reference(interruption), second.transcript) <= 0.25, second.transcript
    assert result.agent_paused == 1  # the barge-in, and no false alarm from the echo


def test_cli_simulates_the_echo_and_reports_the_canceller(tmp_path):
    report = tmp_path / "r.json"
    proc = run_cli("headless", str(SPEECH / "en_goforward.wav"), "--echo-db", "-20", "--echo-delay-ms", "80",
                   "--report", str(report), "--set", "llm.max_reply_tokens=32")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(report.read_text())
    assert data["agent_paused"] == 0 and len(data["turns"]) == 1
    assert "echo canceller: delay estimate" in proc.stderr
    bad = run_cli("headless", str(SPEECH / "en_goforward.wav"), "--echo-db", "-200")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "--echo-db" in bad.stderr
