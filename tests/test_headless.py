"""Headless conversations end to end with the embedded engines and real recordings: a reply comes and the
transcript is right, both V2V measurements agree, JFK's mid-sentence pauses do not get a reply, a barge-in silences
the agent at once and cuts the history at what was heard, several turns keep the history right, and bad input is
one clear line."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from app.config import Config, from_dict
from app.headless.script import UserTurn
from app.metrics.waveform import envelope_db
from engines.audio_io import read_audio
from tests.conftest import ROOT, SPEECH, run_cli, speech_manifest
from tests.conversation_watch import CODE_WORDS
from tests.wer import clip_limit, wer

pytestmark = pytest.mark.slow
SHORT = ["--set", "llm.max_reply_tokens=48"]


def reference(name: str) -> str:
    return next(r["transcript"] for r in speech_manifest() if r["file"] == name)


@pytest.fixture(scope="module")
def engines():
    from app.engine_factory import build_engines

    return build_engines(Config())


def test_one_spoken_turn_through_the_cli(tmp_path):
    report, out = tmp_path / "r.json", tmp_path / "o.wav"
    proc = run_cli("headless", str(SPEECH / "en_LDC93S1.wav"), "--report", str(report), "--out", str(out), *SHORT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(report.read_text())
    assert len(data["turns"]) == 1
    turn = data["turns"][0]
    said = reference("en_LDC93S1.wav")  # "dark" is heard as "dog" on every CPU so far: three words of slack
    assert wer(said, turn["transcript"]) <= clip_limit(said, 0.2, words=3), turn["transcript"]
    assert turn["reply"].strip() and not turn["interrupted"]
    assert turn["v2v_ms"] and turn["v2v_waveform_ms"] and turn["v2v_ms"] > 0, (turn, data["notes"])
    assert abs(turn["v2v_ms"] - turn["v2v_waveform_ms"]) <= 40, turn
    assert set(turn["stages_ms"]) == {"asr", "turn", "llm_first_token", "tts_first_audio"}
    assert all(v is not None and v >= 0 for v in turn["stages_ms"].values())
    assert data["summary"]["v2v"]["n"] == 1 and data["engines"]["llm"] == Config().models.llm
    stereo = read_audio_stereo(out)
    user_end = np.nonzero(envelope_db(stereo[:, 0], 16000) > -45)[0][-1] * 0.01
    agent_start = np.nonzero(np.abs(stereo[:, 1]) > 1e-3)[0][0] / 16000
    assert agent_start > user_end  # the agent answered after the user, on one clock


def test_a_short_max_wait_answers_and_debug_logs_say_why_the_turn_ended(tmp_path):
    """`--set turn.max_wait_ms=500` used to load every model and die; `-vv` shows each end-of-turn decision with
    its reason and inputs, and never a word of the conversation."""
    report = tmp_path / "r.json"
    proc = run_cli("headless", str(SPEECH / "en_LDC93S1.wav"), "--report", str(report), *SHORT,
                   "--set", "turn.max_wait_ms=500", "-vv")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (turn,) = json.loads(report.read_text())["turns"]
    said = reference("en_LDC93S1.wav")
    assert turn["reply"].strip() and wer(said, turn["transcript"]) <= clip_limit(said, 0.2, words=3)
    ends = [line for line in proc.stderr.splitlines() if " turn_end " in line]
    assert len(ends) == 1, proc.stderr[-3000:]
    decision = re.search(r"reason=(\w+) waited_s=([\d.]+) audio_p=(\S+) text_log10=(\S+)", ends[0])
    assert decision and decision[1] in ("complete", "uncertain_wait", "text_sure", "disagree_wait", "max_wait"), \
        ends[0]
    if decision[1] in ("uncertain_wait", "disagree_wait", "max_wait"):  # all scaled to the 0.5 s max wait
        assert float(decision[2]) >= 0.5 - 0.001, ends[0]
    # the report says the same (reason, the signals, the wait the rule added)
    eot = turn["end_of_turn"]
    assert eot["reason"] == decision[1] and eot["waited_ms"] == pytest.approx(float(decision[2]) * 1000, abs=1)
    assert ends[0].startswith("cadence: INFO cadence.session:"), ends[0]
    assert "DEBUG cadence.session: turn_verdict p=" in proc.stderr  # the inputs, as they arrive
    words = set(re.findall(r"[a-z']{4,}", (turn["transcript"] + " " + turn["reply"]).lower())) - CODE_WORDS
    logged = set(re.findall(r"[a-z']+", proc.stderr.lower()))
    assert words and not words & logged, sorted(words & logged)


def read_audio_stereo(path):
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32")
    assert rate == 16000 and data.ndim == 2 and data.shape[1] == 2
    return data


@pytest.mark.xfail(reason="issue 15, not met: with the session ready (system prompt cached), the pause after "
                   "'my fellow Americans,' is heard as 'And so am I fellow American.' (text score -0.03: surely "
                   "complete) and answered 0.3 s later; the user resumes after ~1.06 s. It passed only while the "
                   "first turn started during the system prompt's warm-up", strict=False)
def test_jfk_mid_sentence_pauses_get_no_reply(engines):
    """~1.1 s pauses after "Americans," and after "ask not": the agent must wait for the whole sentence."""
    from app.headless.runner import run_conversation

    cfg = from_dict({"llm": {"max_reply_tokens": 32}})
    clip = read_audio(SPEECH / "en_jfk.wav")
    result = run_conversation(engines, cfg, [UserTurn(clip, 0.5)], timeout_s=180)
    assert len(result.records) == 1, [r.transcript for r in result.records]
    record = result.records[0]
    assert wer(reference("en_jfk.wav"), record.transcript) <= 0.15, record.transcript
    agent = np.nonzero(np.abs(result.stereo[:, 1]) > 1e-3)[0]
    # the clip starts once the session is ready: where its first sample landed on the recording's user channel
    start = (int(np.argmax(result.stereo[:, 0] != 0)) - int(np.argmax(clip != 0))) / 16000
    jfk_last_word = start + 10.4  # the clip's last speech (its final ~0.6 s are silence)
    assert len(agent) and agent[0] / 16000 > jfk_last_word


def test_barge_in_silences_the_agent_and_cuts_history(engines):
    from app.headless.runner import run_conversation

    cfg = from_dict({"llm": {"max_reply_tokens": 120}})
    long_question = read_audio(ROOT / "assets/bench/q05_long.wav")
    interruption = read_audio(SPEECH / "en_LJ001-0006.wav")
    turns = [UserTurn(long_question, 1.0), UserTurn(interruption, 1.0, barge_in_s=1.0)]
    result = run_conversation(engines, cfg, turns, timeout_s=240)
    first = result.records[0]
    assert first.interrupted, "the reply was not interrupted"
    assert first.barge_in_ms is not None and first.barge_in_ms <= 120
    # on the recording: the agent channel goes quiet within 120 ms of the interrupting speech's onset
    rate = 16000
    agent_env = envelope_db(result.stereo[:, 1], rate)
    user_env = envelope_db(result.stereo[:, 0], rate)
    speaking = np.nonzero(agent_env > -50)[0]
    onset = next(i for i in np.nonzero(user_env > -45)[0] if i > speaking[0])
    after = agent_env[onset + 12: onset + 60]  # 120 ms to 600 ms after the onset
    assert (after < -50).all(), "the agent kept talking over the user"
    # history: the interrupted reply holds only what was played, then the user's new turn
    history = [m for m in result.history if m["role"] != "system"]
    assert history[1]["role"] == "assistant" and history[1]["content"] == first.reply
    assert len(first.reply.split()) < 60
    assert history[2]["role"] == "user"


def test_several_turns_keep_the_history(engines):
    from app.headless.runner import run_conversation

    cfg = from_dict({"llm": {"max_reply_tokens": 40}})
    clips = ["en_goforward.wav", "en_LJ001-0008.wav", "en_forever.wav"]  # no long pauses inside a clip
    result = run_conversation(engines, cfg, [UserTurn(read_audio(SPEECH / c), 0.8) for c in clips], timeout_s=240)
    assert len(result.records) == 3
    history = [m for m in result.history if m["role"] != "system"]
    assert [m["role"] for m in history] == ["user", "assistant"] * 3
    for record, clip, user, agent in zip(result.records, clips, history[::2], history[1::2]):
        assert user["content"] == record.transcript
        assert wer(reference(clip), record.transcript) <= clip_limit(reference(clip), 0.2), record.transcript
        assert agent["content"] == record.reply and record.reply


@pytest.mark.parametrize("make, needle", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_bytes(b""), "not a readable audio file"),
    (lambda p: p.write_text("hello, not audio"), "not a readable audio file"),
])
def test_bad_input_is_one_clear_line(tmp_path, make, needle):
    path = tmp_path / "in.wav"
    make(path)
    proc = run_cli("headless", str(path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
