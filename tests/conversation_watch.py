"""Running a real headless conversation with the session watched, and looking inside it afterwards: every event
and action it notified, its state and the scheduler's outstanding units when the script ended, and whether any
word of the conversation reached the logs. Shared by the fault, barge-in storm and model tests."""
from __future__ import annotations

import dataclasses
import re
import time

import numpy as np

from app.config import Config
from app.conversation import events as e
from app.conversation.state import Phase
from app.headless.script import UserTurn
from engines.audio_io import read_audio
from tests.conftest import ROOT, SPEECH, speech_manifest

RATE = 16000
CODE_WORDS = {w for d in ("app", "engines", "scheduler") for p in (ROOT / d).rglob("*.py")
              for w in re.findall(r"[a-z]+", p.read_text(encoding="utf-8").lower())}


def reference(name: str) -> str:
    return next(r["transcript"] for r in speech_manifest() if r["file"] == name)


def clip(name: str) -> np.ndarray:
    return read_audio(SPEECH / name)


@dataclasses.dataclass
class Run:
    result: object = None
    items: list = dataclasses.field(default_factory=list)  # every event, action and phase the session notified
    timed: list = dataclasses.field(default_factory=list)  # (perf_counter, item) for the same
    at_end: dict = dataclasses.field(default_factory=dict)  # the session and scheduler as the script ended
    spans: object = None  # the scheduler's span log

    def of(self, kind) -> list:
        return [item for item in self.items if isinstance(item, kind)]


def snapshot(session) -> dict:
    scheduler = session.scheduler
    outstanding = scheduler.outstanding()
    held = session.outstanding()
    return {"phase": session.state.phase, "idle": session.idle.is_set(),
            "busy": [h for h in outstanding if h.unit.stage != "vad"],  # the VAD judges every block, always
            "cancelled_left": [h for h in outstanding if h.unit.turn >= 0 and scheduler.is_turn_cancelled(h.unit.turn)],
            "replies": held["replies"], "speculations": held["speculations"],
            "playback_s": session.playback.lead_s()}


def converse(engines, cfg: Config, turns: list[UserTurn], monkeypatch=None, timeout_s: float = 240) -> Run:
    """`run_conversation`, with the session watched: every notification kept, and its state and the scheduler's
    outstanding units read when the script ends (before the scheduler closes)."""
    from app.headless import runner

    run = Run()

    def watch(session) -> None:
        session.subscribe(run.items.append)
        session.subscribe(lambda item: run.timed.append((time.perf_counter(), item)))

    def at_end(session) -> None:
        run.at_end, run.spans = snapshot(session), session.scheduler.spans

    run.result = runner.run_conversation(engines, cfg, turns, timeout_s=timeout_s, on_session=watch, on_end=at_end)
    return run


def assert_clean_end(run: Run) -> None:
    """Listening and idle as the script ended; no unit of a cancelled turn (or any but the VAD's) queued or running;
    no reply or speculation left."""
    end = run.at_end
    assert not run.result.notes, run.result.notes
    assert end["phase"] is Phase.LISTENING and end["idle"], end
    assert end["cancelled_left"] == [] and end["busy"] == [], end
    assert end["replies"] == [] and end["speculations"] == [], end


def conversation_words(run: Run) -> set[str]:
    texts = [m["content"] for m in run.result.history if m["role"] != "system"]
    texts += [x.text for x in run.of(e.TranscriptFinal) + run.of(e.ReplyAudio)]
    return {w for t in texts for w in re.findall(r"[a-z']+", t.lower())}


def assert_no_words_logged(caplog, run: Run) -> None:
    """No word of what was said (a word the code itself never writes) and no two of its words in a row."""
    logged = "\n".join(caplog.text.splitlines() + [r.getMessage() for r in caplog.records]).lower()
    logged_words = set(re.findall(r"[a-z']+", logged))
    said = conversation_words(run)
    assert said, "nothing was said"
    leaked = {w for w in said if len(w) >= 3 and w in logged_words and w not in CODE_WORDS}
    assert not leaked, f"words of the conversation in the logs: {sorted(leaked)}"
    texts = [m["content"] for m in run.result.history if m["role"] != "system"]
    for text in texts:
        words = re.findall(r"[a-z']+", text.lower())
        for pair in zip(words, words[1:]):
            assert not re.search(rf"\b{pair[0]}\W+{pair[1]}\b", logged), f"{' '.join(pair)!r} is in the logs"
