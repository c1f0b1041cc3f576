"""Per-turn stage latencies, computed from the span log alone.

For the turn whose reply was committed (all times on the perf_counter session clock):
- asr: VAD stop (the user paused for `pause_s`) -> final transcript ready (the `asr-finish` unit finished)
- turn: VAD stop -> the end of the turn decided (the commit, where the turn's used `speculation` span ends: Smart
  Turn's verdict, the text score and the rule's wait; on a CPU-only machine the verdict may come after it, when
  the words alone decided)
- llm_first_token: the reply's first LLM chunk queued -> first token text produced (the reply is prepared
  during the pause, held until the commit: this is its own generation time, wherever it fell; the prefill ran
  before it, and a discarded speculation's units are not counted)
- tts_first_audio: the first TTS unit queued -> its first audio chunk
- v2v: end of the user's speech -> the agent's first sample played (what the user experiences, including the
  `pause_s` the VAD waits before calling the pause, as the reference agents count it)
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from app.conversation import actions as a
from app.conversation import events as e
from app.stages import Label, Latency, Stage
from scheduler import Scheduler, Span

STAGES = tuple(Latency)  # every per-turn figure, in the order the tables and graphs show them


def _first(spans: list[Span], pred) -> Span | None:
    hits = [s for s in spans if pred(s)]
    return min(hits, key=lambda s: s.queued_at) if hits else None


def last_user_speech(spans: list[Span], before: float | None = None) -> Span | None:
    """The user's last speech (before `before`, when given): where voice-to-voice starts."""
    speech = [s for s in spans if s.stage == Stage.USER_SPEECH and (before is None or s.finished_at <= before)]
    return max(speech, key=lambda s: s.finished_at) if speech else None


def stage_latencies(spans: list[Span], speech: Span | None = None) -> dict[str, float | None]:
    """Milliseconds per stage for one turn's spans (None where the turn never got there). `speech` is the user's
    last speech before the reply (default: the turn's own)."""
    speech = speech or last_user_speech(spans)
    stop_at = speech.meta.get("stop_at") if speech else None
    out: dict[str, float | None] = dict.fromkeys(STAGES)
    asr = _first(spans, lambda s: s.stage == Stage.ASR and s.label == Label.ASR_FINISH and s.status == "ok")
    commit = _first(spans, lambda s: s.stage == Stage.SPECULATION and s.meta.get("used"))
    if stop_at is not None and asr:
        out[Latency.ASR] = (asr.finished_at - stop_at) * 1000
    if stop_at is not None and commit:
        out[Latency.TURN] = (commit.finished_at - stop_at) * 1000
    # work of a speculation that was discarded (its words changed, the user resumed) is not the reply's
    wasted = {s.meta.get("number") for s in spans if s.stage == Stage.SPECULATION and not s.meta.get("used")}
    spans = [s for s in spans if s.meta.get("speculation") is None or s.meta.get("speculation") not in wasted]
    # the reply's own chunks (not the prefill or the warm-up)
    produce = [s for s in spans if s.stage == Stage.LLM and s.label.startswith(Label.LLM_CHUNK_PREFIX)]
    token_at = next((s.meta["first_token_at"] for s in produce if "first_token_at" in s.meta), None)
    if produce and token_at is not None:
        out[Latency.LLM_FIRST_TOKEN] = (token_at - min(s.queued_at for s in produce)) * 1000
    tts = _first(spans, lambda s: s.stage == Stage.TTS and s.status == "ok" and s.meta.get("first_audio_s") is not None)
    if tts and tts.started_at is not None:
        out[Latency.TTS_FIRST_AUDIO] = (tts.started_at - tts.queued_at + tts.meta["first_audio_s"]) * 1000
    play = _first(spans, lambda s: s.stage == Stage.PLAYBACK)
    if speech and play and play.started_at is not None:
        out[Latency.V2V] = (play.started_at - speech.finished_at) * 1000
    return out


@dataclass
class TurnRecord:
    turn: int
    transcript: str = ""
    reply: str = ""  # what the user heard
    interrupted: bool = False
    stages_ms: dict[str, float | None] = field(default_factory=dict)
    user_speech_end: float | None = None  # session clock
    first_audio_at: float | None = None
    barge_in_ms: float | None = None  # speech onset -> agent silent, for an interrupted reply
    decision: dict = field(default_factory=dict)  # why the turn ended: reason, audio_p, text_log10, waited_ms (and
    # audio_after_commit: Smart Turn ran after the commit, its p did not decide)


class TurnCollector:
    """Observes a session; when a reply ends (finished or interrupted) it builds that turn's record from the
    spans and hands it to listeners (headless report, UI graphs). Keeps texts in memory only."""

    def __init__(self, scheduler: Scheduler, turns: range | None = None):
        """`turns`: the turn ids of this session, when the scheduler's spans hold other sessions' too."""
        self.scheduler = scheduler
        self.turns = turns
        self.records: list[TurnRecord] = []
        self.listeners: list[Callable[[TurnRecord], None]] = []
        self._transcripts: dict[int, str] = {}
        self._committed: int | None = None
        self._decision: dict = {}

    def __call__(self, item) -> None:
        if isinstance(item, e.TranscriptFinal):
            self._transcripts[item.turn_id] = item.text
        elif isinstance(item, a.CommitReply):
            self._committed = item.turn_id
            self._decision = {"reason": item.reason, "audio_p": item.audio_p, "text_log10": item.text_log10,
                              "waited_ms": round(item.waited_s * 1000, 1), "at": item.at}
        elif isinstance(item, e.TurnVerdict) and item.turn_id == self._committed and \
                self._decision.get("audio_p") is None:  # it ran after the commit (the words settled the turn)
            self._decision = {**self._decision, "audio_p": item.probability, "audio_after_commit": True}
        elif isinstance(item, a.AppendHistory) and item.role == "assistant" and self._committed is not None:
            self._close(self._committed, item.text, item.interrupted)
            self._committed = None

    def _close(self, turn: int, reply: str, interrupted: bool) -> None:
        spans = self.scheduler.spans.for_turn(turn)
        play = _first(spans, lambda s: s.stage == Stage.PLAYBACK)
        everything = self.scheduler.spans.snapshot()
        mine = everything if self.turns is None else [s for s in everything if s.turn in self.turns]
        speech = last_user_speech(mine, play.started_at if play else None)
        record = TurnRecord(turn, self._transcripts.pop(turn, ""), reply, interrupted,
                            stage_latencies(spans, speech))
        record.user_speech_end = speech.finished_at if speech else None
        record.decision = self._decision
        record.first_audio_at = play.started_at if play else None
        if interrupted:
            barge = [s for s in self.scheduler.spans.for_turn(turn) if s.stage == Stage.BARGE_IN]
            record.barge_in_ms = barge[0].run_s * 1000 if barge else None
        self.records.append(record)
        for listener in self.listeners:
            listener(record)
