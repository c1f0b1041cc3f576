"""A recorded event stream: everything a session told its observers (events, actions, phases), every span and every
turn record, in arrival order, as JSON. Replaying it into a `UiBridge` drives the window exactly as the live session
did, without models; the widget tests use `assets/demo/recorded_conversation.json`.

Record a new one (real models, the demo questions, one barge-in):
    python -m app.ui.recording assets/demo/recorded_conversation.json"""
from __future__ import annotations

import dataclasses
import json
import sys
import threading
from pathlib import Path
from typing import Any

from app.conversation import actions as a
from app.conversation import events as e
from app.conversation.session import Notification
from app.conversation.state import Phase
from app.metrics.turns import TurnRecord
from scheduler import Span

DEMO_RECORDING = Path(__file__).resolve().parents[2] / "assets" / "demo" / "recorded_conversation.json"


def _item(item: Notification) -> dict:
    if isinstance(item, Phase):
        return {"phase": item.value}
    fields = {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
    return {"type": type(item).__name__, **fields}


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else float(value)


class Recorder:
    """Subscribe it to a session (`session.subscribe(rec.on_item)`), a span log and a TurnCollector."""

    def __init__(self) -> None:
        self.stream: list[dict] = []
        self._lock = threading.Lock()

    def _add(self, entry: dict) -> None:
        with self._lock:
            self.stream.append(entry)

    def on_item(self, item: Notification) -> None:
        self._add({"item": _item(item)})

    def on_span(self, span: Span) -> None:
        d = span.to_dict()
        d["meta"] = {k: _plain(v) for k, v in d["meta"].items()}
        self._add({"span": d})

    def on_record(self, record: TurnRecord) -> None:
        self._add({"record": dataclasses.asdict(record)})

    def save(self, path: Path) -> None:
        with self._lock:
            data = {"version": 1, "stream": list(self.stream)}
        path.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")


def load_item(d: dict) -> object:
    if "phase" in d:
        return Phase(d["phase"])
    kind = d["type"]
    cls = getattr(e, kind, None) or getattr(a, kind)
    return cls(**{k: v for k, v in d.items() if k != "type"})


def _known(cls: type, data: dict) -> Any:
    """A dataclass from a recorded dict, ignoring fields this version does not have."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def load_stream(path: Path = DEMO_RECORDING) -> list[tuple[str, object]]:
    """[("item" | "span" | "record", object), ...] in the order the session produced them."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    out: list[tuple[str, object]] = []
    for entry in data["stream"]:
        if "item" in entry:
            out.append(("item", load_item(entry["item"])))
        elif "span" in entry:
            out.append(("span", _known(Span, entry["span"])))
        else:
            out.append(("record", _known(TurnRecord, entry["record"])))
    return out


def replay(stream: list[tuple[str, object]], bridge) -> None:
    """Feed a recorded stream into a bridge (on the calling thread)."""
    for kind, obj in stream:
        {"item": bridge.on_session_item, "span": bridge.on_span, "record": bridge.on_turn_record}[kind](obj)


def record_demo(out: Path, max_reply_tokens: int = 48) -> None:
    """Run the demo questions headless with real models (the second one barges in) and save the stream."""
    from app.audio.headless import HeadlessDuplex
    from app.audio.playback import PlaybackBuffer
    from app.config import from_dict
    from app.engine_factory import build_engines
    from app.headless.script import ScriptedInput, UserTurn
    from app.paths import asset
    from app.runtime import RATE, Conversation, build_conversation
    from engines.audio_io import read_audio

    cfg = from_dict({"llm": {"max_reply_tokens": max_reply_tokens}})
    engines = build_engines(cfg, lambda msg: print(f"[{msg}]", file=sys.stderr))
    turns = [UserTurn(read_audio(asset("bench/q05_long.wav")), 0.8),
             UserTurn(read_audio(asset("demo/q1_tallest_mountain.wav")), 0.8, barge_in_s=1.5),
             UserTurn(read_audio(asset("demo/q2_how_tall.wav")), 0.8)]
    rec = Recorder()
    ran: list[Conversation] = []
    source = ScriptedInput.following(turns, RATE, lambda: ran[0].session if ran else None)
    devices: list[HeadlessDuplex] = []

    def open_device(playback: PlaybackBuffer) -> HeadlessDuplex:
        devices.append(HeadlessDuplex(source, playback, RATE))
        return devices[0]

    conversation = build_conversation(cfg, engines, open_device, cancel_echo=False, observers=[rec.on_item],
                                      on_span=rec.on_span, on_record=rec.on_record)
    ran.append(conversation)
    conversation.start()
    try:
        devices[0].input_over.wait(300)
        conversation.session.idle.wait(60)
    finally:
        conversation.stop()
    rec.save(out)
    print(f"wrote {out}: {len(conversation.collector.records)} turn(s)", file=sys.stderr)


if __name__ == "__main__":
    record_demo(Path(sys.argv[1]) if len(sys.argv) > 1 else DEMO_RECORDING)
