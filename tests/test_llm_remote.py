"""The remote language model against a real OpenAI-compatible server: llama-cpp-python's own (`llama_cpp.server`,
the `server` extra) started here on 127.0.0.1 with the embedded Qwen 0.5B. A spoken conversation through it, a
barge-in, the server's generation stopping when a reply is cancelled (measured), and each fault a server or network
can cause: not reachable, refused key, unknown model, error status, slow first token, a stream cut half-way or
malformed (those through tests/fault_proxy.py, a real proxy in front of the real server), and the server killed
mid-reply and started again."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import time

import pytest

from app.config import from_dict
from app.conversation import events as e
from app.headless.script import UserTurn
from app.llama_server import LlamaServer, free_port, server_available
from engines.audio_io import read_audio
from engines.engine_set import Engines
from engines.llm_remote import RemoteGenerator, RemoteLlmError, RemoteScoringGenerator
from engines.protocols import Message
from scheduler import REMOTE_LANE
from tests.conftest import ROOT
from tests.conversation_watch import assert_clean_end, converse
from tests.fault_proxy import Fault, FaultProxy
from tests.ui_helpers import wait_for

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not server_available(), reason="llama-cpp-python's server extra is not installed "
                                                                  "(pip install 'cadence[server]')")]
MODEL = "qwen2.5-coder-0.5b"
SYSTEM = Message("system", "You are a voice assistant. Answer in one short sentence.")
KEY = "sk-test-key-do-not-print-7f3a"


@pytest.fixture(scope="module")
def server():
    with LlamaServer(MODEL, alias="qwen", n_ctx=4096, logprobs=True) as srv:
        yield srv


@pytest.fixture
def proxy(server):
    p = FaultProxy(server.base_url)
    yield p
    p.close()


def question(name: str) -> UserTurn:
    return UserTurn(read_audio(ROOT / "assets/bench" / name), 1.0)


def remote_engines(local: Engines, llm) -> Engines:
    return Engines(local.vad, local.turn, local.asr, llm, local.tts, names={**local.names, "llm": llm.name})


# ---- the engine ---------------------------------------------------------------------------------------------------
def test_a_reply_streams_in_pieces_and_the_text_score_tells_a_fragment(server):
    gen = RemoteScoringGenerator(server.base_url, "qwen", chat_template="chatml")
    assert gen.check() == ["qwen"]
    complete = gen.end_of_utterance_score([SYSTEM, Message("user", "What is the capital of France?")])
    fragment = gen.end_of_utterance_score([SYSTEM, Message("user", "What is the?")])
    assert complete > -0.5 > -1.0 > fragment, (complete, fragment)
    reply = gen.start([SYSTEM, Message("user", "What is the capital of France?")], 64)
    steps = []
    while not reply.finished:
        steps.append(reply.step(2))
    assert "Paris" in "".join(s.text for s in steps)
    assert len(steps) > 2 and all(s.tokens <= 2 for s in steps)  # streamed, not one block
    assert reply.finish_reason == "eog" and reply.first_token_s is not None


def test_cancel_closes_the_stream_and_the_server_stops_generating(server):
    """Measured: after a cancel, a new request's first token comes about as soon as on an idle server. Had the
    server gone on with the cancelled reply (~290 tokens, seconds for the 0.5B here), it would wait for it:
    llama-cpp-python's server runs one request at a time."""
    gen = RemoteGenerator(server.base_url, "qwen")
    idle = gen.start([Message("user", "Say hi.")], 4)
    t0 = time.perf_counter()
    idle.step(1)
    idle_s = time.perf_counter() - t0
    idle.cancel()
    long = gen.start([Message("system", "You are a voice assistant."),
                      Message("user", "List the numbers from one to fifty as words.")], 400)  # ~290 tokens
    assert long.step(5).tokens == 5
    t0 = time.perf_counter()
    long.cancel()
    assert long.finished and long.finish_reason == "cancelled" and long.step(4).tokens == 0
    after = gen.start([Message("user", "Say hi.")], 4)
    after.step(1)
    after_s = time.perf_counter() - t0
    print(f"first token: idle {idle_s * 1000:.0f} ms, right after a cancel {after_s * 1000:.0f} ms")
    assert after_s < idle_s + 1.0, (idle_s, after_s)


# ---- a spoken conversation ----------------------------------------------------------------------------------------
def test_a_spoken_conversation_through_the_server_answers_every_turn(engines, server):
    llm = RemoteScoringGenerator(server.base_url, "qwen", chat_template="chatml")
    cfg = from_dict({"llm": {"base_url": server.base_url, "remote_model": "qwen", "remote_chat_template": "chatml"}})
    run = converse(remote_engines(engines, llm), cfg, [question("q04_short.wav"), question("q06_short.wav")])
    records = run.result.records
    assert [bool(r.reply) for r in records] == [True, True], [(r.transcript, r.reply) for r in records]
    assert "ottawa" in records[0].reply.lower() and "shakespeare" in records[1].reply.lower()
    assert all(r.stages_ms.get("v2v") for r in records)
    llm_spans = [s for s in run.spans.snapshot() if s.stage == "llm" and s.turn >= 1]
    assert llm_spans and all(s.lane == REMOTE_LANE for s in llm_spans)  # the device lane is not held waiting
    # each speculation read its text score from the server; whether it reached the rule before the rule stopped
    # waiting for it (1 s) is the server's speed: llama-cpp-python's needs logits_all, which slows every prompt.
    # The replies' own speculations scored the whole question as complete (one made at a pause inside a question,
    # "What is the capital", rightly scores low, and is discarded)
    spans = run.spans.snapshot()
    used = {s.meta.get("number") for s in spans if s.stage == "speculation" and s.meta.get("used")}
    scores = [s.meta.get("text_log10") for s in spans
              if s.label == "prefill" and s.status == "ok" and s.meta.get("speculation") in used]
    assert len(scores) == 2 and all(x is not None and x > -1.0 for x in scores), scores
    assert all(s.meta.get("text_log10") is not None for s in spans if s.label == "prefill" and s.status == "ok")
    assert_clean_end(run)


def test_a_barge_in_stops_the_reply_and_the_servers_generation(engines, server):
    llm = RemoteGenerator(server.base_url, "qwen")
    cfg = from_dict({"llm": {"base_url": server.base_url, "remote_model": "qwen", "max_reply_tokens": 200}})
    interruption = read_audio(ROOT.parent / "shared/fixtures/speech/en_LJ001-0006.wav") \
        if (ROOT.parent / "shared/fixtures/speech/en_LJ001-0006.wav").exists() else read_audio(
            ROOT / "assets/bench/q01_short.wav")
    turns = [question("q05_long.wav"), UserTurn(interruption, 1.0, barge_in_s=1.0)]
    run = converse(remote_engines(engines, llm), cfg, turns)
    first = run.result.records[0]
    # in-process replies: within 120 ms (tests/test_headless.py); here a server process generates on the same two
    # cores, and the VAD's verdict on a block may come a block (32 ms) later: 128 ms was seen once in a full suite
    assert first.interrupted and first.barge_in_ms is not None and first.barge_in_ms <= 160
    # the server is free at once: a new request is answered as on an idle server
    probe = RemoteGenerator(server.base_url, "qwen").start([Message("user", "Say hi.")], 2)
    t0 = time.perf_counter()
    probe.step(1)
    assert time.perf_counter() - t0 < 1.5
    assert_clean_end(run)


# ---- faults ---------------------------------------------------------------------------------------------------------
def test_an_unreachable_server_is_one_line_naming_the_url_and_exit_2(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    script = tmp_path / "s.json"
    script.write_text('[{"wav": "%s"}]' % (ROOT / "assets/bench/q01_short.wav"))
    out = subprocess.run([sys.executable, "-m", "app.cli", "--set", f"llm.base_url={url}", "headless", "--script",
                          str(script)], capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert out.returncode == 2, out.stderr
    assert url in out.stderr and "cannot reach" in out.stderr and "Traceback" not in out.stderr


def test_a_refused_key_names_the_variable_and_never_shows_the_key():
    with LlamaServer(MODEL, alias="qwen", api_key=KEY, n_ctx=512) as srv:
        with pytest.raises(RemoteLlmError, match="CADENCE_LLM_API_KEY") as refused:
            RemoteGenerator(srv.base_url, "qwen", api_key="sk-wrong-key-0000").check()
        assert "sk-wrong" not in str(refused.value) and "401" in str(refused.value)
        ok = RemoteGenerator(srv.base_url, "qwen", api_key=KEY)
        assert ok.check() == ["qwen"]
        reply = ok.start([Message("user", "Say hi.")], 4)
        assert reply.step(4).text


def test_a_model_the_server_lacks_is_named_with_what_it_has(server):
    with pytest.raises(RemoteLlmError, match="has no model 'llama-70b'.*it has: qwen"):
        RemoteGenerator(server.base_url, "llama-70b").check()


@pytest.mark.parametrize("fault, expected", [
    (Fault(status=500), "answered 500"),
    (Fault(status=401), "refused the request \\(401\\)"),
    (Fault(status=404), "answered 404"),
    (Fault(delay_s=2.5), "sent nothing for 1 s"),
    (Fault(cut_after_lines=3), "ended before the reply did|broke off"),
    (Fault(garbage_after_lines=3), "cannot read|broke off|ended before the reply did"),  # the SDK may drop it
], ids=["500", "401", "404", "slow-first-token", "cut-half-way", "malformed"])
def test_each_server_fault_is_one_clear_line(proxy, fault, expected):
    gen = RemoteGenerator(proxy.base_url, "qwen", first_token_timeout_s=1.0)
    proxy.fault = fault
    reply = gen.start([SYSTEM, Message("user", "Name three colours.")], 64)
    with pytest.raises(RemoteLlmError, match=expected) as failed:
        while not reply.finished:
            reply.step(4)
    message = str(failed.value)
    assert proxy.base_url in message and "\n" not in message and "colours" not in message
    # the next request goes through: the engine holds no broken state. (Once in a full run, right after the
    # malformed stream, the server ended this next stream early too: llama-cpp-python's server interrupts a
    # stream when another request waits, and the abandoned one may still hold it; so one retry.)
    for attempt in range(2):
        try:
            assert gen.start([SYSTEM, Message("user", "Say hi.")], 8).step(8).tokens > 0
            break
        except RemoteLlmError:
            if attempt:
                raise
            time.sleep(1.0)


def test_a_fault_mid_conversation_drops_that_turn_and_the_next_is_answered(engines, proxy):
    llm = RemoteGenerator(proxy.base_url, "qwen", first_token_timeout_s=2.0)
    cfg = from_dict({"llm": {"base_url": proxy.base_url, "remote_model": "qwen"}})
    proxy.fault = Fault(cut_after_lines=2, times=None)  # every request of the first turn breaks off
    turns = [dataclasses.replace(question("q04_short.wav"), pause_after_s=2.0), question("q06_short.wav")]

    failures: list[str] = []

    def heal_after_first_failure(session) -> None:
        def on_item(item) -> None:
            if isinstance(item, e.EngineFailed):
                failures.append(item.reason)
                proxy.fault = None
        session.subscribe(on_item)

    from app.headless import runner

    result = runner.run_conversation(remote_engines(engines, llm), cfg, turns, on_session=heal_after_first_failure,
                                     timeout_s=240)
    replies = [(r.transcript, r.reply) for r in result.records]
    assert failures and proxy.base_url in failures[0] and "\n" not in failures[0], failures
    # dropped: nothing was said. A failure inside the pause (the speculation's request) ends the turn before its
    # commit and leaves no turn record; one after the commit leaves a record with nothing heard
    assert all(reply == "" for heard, reply in replies if "canada" in heard.lower()), replies
    assert not any("ottawa" in reply.lower() for _, reply in replies), replies
    assert "shakespeare" in replies[-1][1].lower(), replies


def test_the_server_killed_mid_reply_drops_that_turn_and_answers_once_it_is_back(engines):
    port = free_port()
    srv = LlamaServer(MODEL, alias="qwen", port=port).start()
    try:
        llm = RemoteGenerator(srv.base_url, "qwen", first_token_timeout_s=3.0)
        cfg = from_dict({"llm": {"base_url": srv.base_url, "remote_model": "qwen", "max_reply_tokens": 200}})
        restarted = threading.Event()
        failures: list[str] = []

        def kill_at_first_audio(session) -> None:
            def on_item(item) -> None:
                if isinstance(item, e.ReplyAudio) and not restarted.is_set():
                    restarted.set()
                    srv.kill()
                    threading.Thread(target=srv.start, daemon=True).start()
                elif isinstance(item, e.EngineFailed):
                    failures.append(item.reason)
            session.subscribe(on_item)

        from app.headless import runner

        turns = [dataclasses.replace(question("q05_long.wav"), pause_after_s=12.0), question("q06_short.wav")]
        result = runner.run_conversation(remote_engines(engines, llm), cfg, turns, on_session=kill_at_first_audio,
                                         timeout_s=240)
        assert restarted.is_set()
        # the first turn was dropped with one line naming the server; the second was answered once it was back
        assert failures and all(srv.base_url in f and "\n" not in f for f in failures), failures
        assert "shakespeare" in result.records[-1].reply.lower(), [(r.transcript, r.reply) for r in result.records]
    finally:
        srv.stop()



def test_the_settings_test_connection_lists_the_servers_models(qapp, server):
    from app.config import Config
    from app.ui.remote_llm_form import REMOTE, RemoteLlmForm

    form = RemoteLlmForm(Config().llm)
    form.source.setCurrentText(REMOTE)
    form.url.setText(server.base_url)
    results: list = []
    form.tested.connect(lambda text, ok: results.append((text, ok)))
    form.test_connection()
    wait_for(qapp, lambda: bool(results), 20)
    assert results == [("connected: 1 model(s): qwen", True)] and form.result.text() == results[0][0]


def test_a_server_without_a_text_score_leaves_the_end_of_turn_to_the_audio(proxy, caplog, monkeypatch):
    import logging

    # a library configured earlier in the same test process may have disabled or raised the level of our loggers
    monkeypatch.setattr(logging.getLogger("cadence.engines"), "disabled", False)
    caplog.set_level(logging.WARNING, logger="cadence.engines")
    gen = RemoteScoringGenerator(proxy.base_url, "qwen", chat_template="chatml")
    proxy.fault = Fault(status=404)  # the completions endpoint is not there (some servers have chat only)
    reply = gen.start([SYSTEM, Message("user", "What is the capital of France?")], 32)
    assert reply.eou_score() is None and not gen.scoring
    assert "gives no text end-of-turn score" in caplog.text and proxy.base_url in caplog.text
    text = ""
    while not reply.finished:
        text += reply.step(4).text
    assert "Paris" in text
    assert gen.end_of_utterance_score([SYSTEM, Message("user", "Hi.")]) is None  # not asked again


def test_bench_remote_compares_in_process_remote_a_round_trip_and_two_sessions(tmp_path):
    from tests.conftest import run_cli

    out = tmp_path / "remote.json"
    proc = run_cli("--set", f"models.llm={MODEL}", "bench", "remote", "--quick", "--turns", "1", "--rtt-ms", "20",
                   "--sessions", "2", "--json", str(out), timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    runs = result["runs"]
    assert list(runs) == ["in-process", "remote, loopback", "remote, +20 ms RTT", "remote, 2 sessions: #1",
                          "remote, 2 sessions: #2"]
    singles = ("in-process", "remote, loopback", "remote, +20 ms RTT")
    assert all(runs[k]["answered"] >= 1 for k in singles), runs
    # Two sessions on llama-cpp-python's single-slot server: it interrupts a stream when another request waits, so
    # a session may lose its one question in a full suite's run (the README's measured run lost 1 of 10); one answer
    # between the two is required. Once, one session answered with no V2V recorded (loaded machine; cause not found)
    assert runs["remote, 2 sessions: #1"]["answered"] + runs["remote, 2 sessions: #2"]["answered"] >= 1, runs
    assert all(runs[k]["p50"] for k in ("in-process", "remote, loopback", "remote, +20 ms RTT")), runs
    assert result["cancel"]["after_cancel_first_token_ms"] > 0 and "x local" in proc.stdout
