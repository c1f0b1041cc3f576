"""`cadence bench serve`: Cadence behind its own Realtime API server, measured from the client's side with the
official `openai` SDK's realtime client (unmodified): 1, 2 and 4 clients at once, each asking spoken questions
(assets/bench, voices the agent does not use) at real-time pace and streaming silence while it listens, as a
microphone does. V2V per turn = the first audio delta received − the end of the question's speech as sent.

`RealtimeClient` is also what the tests drive `cadence serve` with."""
from __future__ import annotations

import argparse
import base64
import json
import threading
import time
from typing import Any

import numpy as np

from app.bench import Log, machine_line
from app.config import Config
from app.errors import InputError
from app.metrics.stats import summarize
from app.paths import asset

CHUNK_S = 0.02  # what a client's audio callback sends at a time
CLIENT_RATE = 24_000


class RealtimeClient:
    """The official SDK's realtime connection, with a receiver thread that keeps every server event and when it
    arrived (perf_counter)."""

    def __init__(self, base_url: str, token: str = "no-token", model: str = "cadence"):
        import openai

        self._client = openai.OpenAI(base_url=base_url, api_key=token, max_retries=0)
        self._manager = self._client.realtime.connect(model=model)
        self.conn: Any = None
        self.events: list[tuple[float, Any]] = []
        self.closed: BaseException | None = None
        self._next_send = 0.0  # when the next 20 ms chunk is due: one clock across calls, as a microphone's
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._receive, daemon=True, name="realtime-client")

    def __enter__(self) -> RealtimeClient:
        self.conn = self._manager.__enter__()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._manager.__exit__(None, None, None)
        self._thread.join(5)

    def _receive(self) -> None:
        try:
            while True:
                event = self.conn.recv()
                with self._cond:
                    self.events.append((time.perf_counter(), event))
                    self._cond.notify_all()
        except Exception as exc:  # the connection closed (by either side): keep why
            with self._cond:
                self.closed = exc
                self._cond.notify_all()

    def wait_for(self, kind: str, after: int = 0, timeout: float = 60.0) -> tuple[int, float, Any]:
        """(index, arrival time, event) of the first `kind` event at index >= `after`; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(after, len(self.events)):
                    if self.events[i][1].type == kind:
                        return i, self.events[i][0], self.events[i][1]
                left = deadline - time.monotonic()
                if left <= 0 or self.closed is not None:
                    raise TimeoutError(f"no {kind} event within {timeout:.0f} s (closed: {self.closed!r})")
                self._cond.wait(left)

    def of_type(self, kind: str, after: int = 0) -> list[Any]:
        with self._cond:
            return [event for _, event in self.events[after:] if event.type == kind]

    def send_raw(self, text: str) -> None:
        """Send a text frame as is (for bad-input tests)."""
        self.conn.send_raw(text)

    def stream(self, audio16k: np.ndarray) -> float:
        """Send 16 kHz float audio as 24 kHz pcm16 appends, one 20 ms chunk when a microphone would have captured
        it (one clock across calls, so the audio never runs ahead of real time); returns when the last sample was
        captured (perf_counter)."""
        from engines.audio_io import resample

        pcm = (np.clip(resample(audio16k, 16000, CLIENT_RATE), -1, 1) * 32767).astype("<i2")
        step = int(CHUNK_S * CLIENT_RATE)
        now = time.perf_counter()
        if self._next_send < now - 0.1:  # idle for a while: the microphone starts now
            self._next_send = now
        for start in range(0, len(pcm), step):
            self._next_send += CHUNK_S  # this chunk is complete (captured) at that time
            delay = self._next_send - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self.conn.input_audio_buffer.append(audio=base64.b64encode(pcm[start:start + step].tobytes()).decode())
        return self._next_send

    def listen(self, until: str, after: int, timeout: float = 120.0) -> tuple[int, float, Any]:
        """Stream silence (a quiet microphone) until an `until` event at index >= `after` arrives."""
        silence = np.zeros(int(CHUNK_S * 16000 * 5), np.float32)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return self.wait_for(until, after, timeout=0.0)
            except TimeoutError:
                if self.closed is not None:
                    raise
            self.stream(silence)
        return self.wait_for(until, after, timeout=0.0)

    def audio(self, after: int = 0, before: int | None = None) -> np.ndarray:
        """The reply audio received in events [after, before), as 24 kHz float32."""
        with self._cond:
            deltas = [e.delta for _, e in self.events[after:before] if e.type == "response.output_audio.delta"]
        raw = b"".join(base64.b64decode(d) for d in deltas)
        return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


def ask(client: RealtimeClient, audio16k: np.ndarray, speech_end_s: float, timeout: float = 180.0) -> dict:
    """One spoken question and its whole reply; the client-side figures."""
    start = len(client.events)
    sent = client.stream(audio16k)
    spoken_end = sent - (len(audio16k) / 16000 - speech_end_s)
    index, done_at, done = client.listen("response.done", start, timeout)
    first = next(((t, e) for t, e in client.events[start:index] if e.type == "response.output_audio.delta"), None)
    transcripts = client.of_type("conversation.item.input_audio_transcription.completed", start)
    replies = client.of_type("response.output_audio_transcript.done", start)
    return {"v2v_ms": (first[0] - spoken_end) * 1000 if first else None,
            "done_ms": (done_at - spoken_end) * 1000, "status": done.response.status,
            "heard": transcripts[-1].transcript if transcripts else "",
            "reply": replies[-1].transcript if replies else "",
            "server_metadata": dict(done.response.metadata or {}), "audio_s": len(client.audio(start, index)) / 24000}


def questions(count: int) -> list[tuple[str, np.ndarray, float]]:
    """(text, 16 kHz audio, end of speech in s) of the first `count` bench questions."""
    from app.metrics.waveform import speech_end_s
    from engines.audio_io import read_audio

    items = json.loads(asset("bench/questions.json").read_text(encoding="utf-8"))[:count]
    out = []
    for q in items:
        audio = read_audio(asset(f"bench/{q['wav']}"))
        out.append((q["text"], audio, speech_end_s(audio, 16000, len(audio) / 16000) or len(audio) / 16000))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", default="1,2,4", help="client counts to run, one after the other (default 1,2,4)")
    parser.add_argument("--questions", type=int, help="questions per client (default 4; 2 with --quick)")


def run(cfg: Config, args: argparse.Namespace, log: Log) -> dict:
    from app.engine_factory import build_engines
    from app.server.realtime import RealtimeServer, serve_in_thread

    try:
        counts = [int(x) for x in args.clients.split(",")]
    except ValueError:
        raise InputError(f"--clients: give counts like 1,2,4, got {args.clients!r}") from None
    if not counts or min(counts) < 1 or max(counts) > 8:
        raise InputError(f"--clients: give counts from 1 to 8, got {args.clients!r}")
    count = args.questions if args.questions is not None else (2 if args.quick else 4)
    if not 1 <= count <= 20:
        raise InputError(f"--questions: give 1 to 20, got {count}")
    asked = questions(count)
    engines = build_engines(cfg, log)
    server = RealtimeServer(cfg, engines, "127.0.0.1", 0, max_clients=max(counts))
    serve_in_thread(server)
    runs = {}
    try:
        for k in counts:
            log(f"{k} client(s) at once, {count} question(s) each")
            turns: list[list[dict]] = [[] for _ in range(k)]

            def one(i: int, turns: list[list[dict]] = turns) -> None:
                with RealtimeClient(f"http://127.0.0.1:{server.port}/v1") as client:
                    client.wait_for("session.created")
                    time.sleep(0.3 * i)  # clients do not all start speaking on the same block
                    for _text, audio, end in asked:
                        turns[i].append(ask(client, audio, end))
                        client.stream(np.zeros(16000, np.float32))  # a second of quiet between questions
            threads = [threading.Thread(target=one, args=(i,)) for i in range(k)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            flat = [t for per in turns for t in per]
            runs[str(k)] = {"v2v_ms": summarize(t["v2v_ms"] for t in flat), "turns": len(flat),
                            "completed": sum(t["status"] == "completed" for t in flat), "per_turn": flat}
            log(f"{k} client(s): V2V P50 {runs[str(k)]['v2v_ms']['p50']}")
    finally:
        server.stop()
    return {"benchmark": "serve", "clients": runs, "questions": [q for q, _, _ in asked],
            "llm": cfg.models.llm_path or cfg.models.llm}


def format_report(result: dict) -> str:
    lines = [machine_line(result["machine"]), f"llm {result['llm']}; client-side V2V through the Realtime API "
             "(official openai SDK client, loopback)", "", f"{'clients':<9}{'turns':>6}{'completed':>11}"
             f"{'V2V P50':>10}{'P90':>8}{'max':>8}"]
    for k, r in result["clients"].items():
        v = r["v2v_ms"]
        lines.append(f"{k:<9}{r['turns']:>6}{r['completed']:>11}{_ms(v.get('p50')):>10}{_ms(v.get('p90')):>8}"
                     f"{_ms(v.get('max')):>8}")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
