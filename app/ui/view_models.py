"""What the window shows, computed from the session's notifications, turn records and spans; no Qt here.

The bridge feeds these models and hands their immutable snapshots to the widgets, which only draw them:
`TranscriptModel` (user and assistant lines, interrupted replies cut where the user stopped hearing them),
`LatencyModel` (per-stage series over the last turns with P50/P90) and `build_timeline` (the last turn's spans as
bars per lane, on a time axis whose zero is the moment the user stopped speaking)."""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from app.conversation import actions as a
from app.conversation import events as e
from app.conversation.state import Phase
from app.metrics.stats import summarize
from app.metrics.turns import STAGES, TurnRecord
from app.stages import MIC_LANE, SPEAKER_LANE, SPECULATION_LANE, Label, Latency, Stage
from scheduler import CPU_LANE, DEVICE_LANE, REMOTE_LANE, Span

STAGE_TITLES: dict[str, str] = {Latency.ASR: "ASR", Latency.TURN: "Turn detection",
                                 Latency.LLM_FIRST_TOKEN: "LLM first token", Latency.TTS_FIRST_AUDIO: "TTS first audio",
                                 Latency.V2V: "Voice-to-voice"}
STATE_LABELS = {Phase.LISTENING: ("listening", "Listening"), Phase.USER_SPEAKING: ("hearing", "Hearing you"),
                Phase.USER_PAUSED: ("thinking", "Thinking"), Phase.RESPONDING: ("thinking", "Thinking"),
                Phase.SPEAKING: ("speaking", "Speaking")}
TIMELINE_ROWS = (CPU_LANE, DEVICE_LANE, REMOTE_LANE, SPECULATION_LANE, MIC_LANE, SPEAKER_LANE)  # top to bottom
HISTORY_TURNS = 50


def state_label(phase: Phase) -> tuple[str, str]:
    """(key, text) of the state indicator for a conversation phase."""
    return STATE_LABELS[phase]


def meter_percent(rms: float, floor_db: float = -60.0) -> int:
    """A microphone RMS level (full scale = 1.0) as 0..100 on a dB scale from `floor_db` to 0 dBFS."""
    if rms <= 0:
        return 0
    db = 20 * math.log10(rms)
    return int(round(100 * min(1.0, max(0.0, (db - floor_db) / -floor_db))))


def echo_text(stats, audio) -> str:
    """The status-bar diagnostics of the echo canceller: its delay estimate and how much echo it removes."""
    if audio.headphones:
        return "headphones: no echo cancellation"
    if not audio.echo_cancellation:
        return "echo cancellation off"
    if stats is None:
        return ""
    delay = "estimating delay" if stats.delay_ms is None else f"delay {stats.delay_ms:.0f} ms"
    reduction = "" if stats.reduction_db is None else f", echo −{stats.reduction_db:.0f} dB"
    return f"echo canceller: {delay}{reduction}"


# ---- transcript ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TranscriptEntry:
    role: str  # "user", "assistant" or "notice"
    text: str  # what was said (for the assistant: what the user heard, or what is rendered so far)
    unheard: str = ""  # an interrupted reply's text that was generated but never played
    interrupted: bool = False
    pending: bool = False  # the reply is still being spoken


class TranscriptModel:
    """Turns AppendHistory / CommitReply / ReplyAudio / EngineFailed into transcript lines."""

    def __init__(self, max_entries: int = 200):
        self.entries: list[TranscriptEntry] = []
        self.max_entries = max_entries
        self._rendered: dict[int, list[str]] = {}  # turn -> reply segments rendered so far
        self._open: int | None = None  # entry index of the reply being spoken

    def update(self, item: object) -> bool:
        """Apply one session notification; True when the transcript changed."""
        if isinstance(item, a.AppendHistory) and item.role == "user":
            self._user(item.text)
        elif isinstance(item, a.CommitReply):  # the user's line follows in the same step: open the reply after it
            self._rendered = {item.turn_id: []}
        elif isinstance(item, e.ReplyAudio) and item.turn_id in self._rendered:
            self._rendered[item.turn_id].append(item.text)
            self._open = self._open if self._open is not None else self._add(TranscriptEntry("assistant", ""))
            self.entries[self._open] = TranscriptEntry("assistant", " ".join(self._rendered[item.turn_id]),
                                                       pending=True)
        elif isinstance(item, a.AppendHistory) and item.role == "assistant":
            self._close(item.text.strip(), item.interrupted)
        elif isinstance(item, e.EngineFailed):
            self._add(TranscriptEntry("notice", f"the {item.stage} stage failed ({item.reason}); listening again"))
        else:
            return False
        return True

    def _user(self, text: str) -> None:
        text = text.strip()
        last = self.entries[-1] if self.entries else None
        if not text:
            pass
        elif last is not None and last.role == "user":  # the user resumed: one user message, as in the history
            self.entries[-1] = TranscriptEntry("user", f"{last.text} {text}")
        else:
            self._add(TranscriptEntry("user", text))
        if self._rendered and self._open is None:  # the committed reply: "…" until its first words
            self._open = self._add(TranscriptEntry("assistant", "", pending=True))

    def _close(self, heard: str, interrupted: bool) -> None:
        if self._open is None:
            self._open = self._add(TranscriptEntry("assistant", "", pending=True))
        rendered = " ".join(text for segments in self._rendered.values() for text in segments)
        unheard = rendered[len(heard):].strip() if interrupted and rendered.startswith(heard) else ""
        self.entries[self._open] = TranscriptEntry("assistant", heard, unheard, interrupted)
        self._open, self._rendered = None, {}

    def _add(self, entry: TranscriptEntry) -> int:
        self.entries.append(entry)
        if len(self.entries) > self.max_entries:
            del self.entries[0]
            self._open = None if self._open is None or self._open == 0 else self._open - 1
        return len(self.entries) - 1

    def snapshot(self) -> tuple[TranscriptEntry, ...]:
        return tuple(self.entries)


# ---- latency graphs --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StageSeries:
    stage: str
    title: str
    turns: tuple[int, ...]  # x: the reply's number since the app started
    values_ms: tuple[float, ...]  # y: NaN where the turn never reached this stage
    last_ms: float | None
    p50_ms: float | None
    p90_ms: float | None
    n: int


@dataclass(frozen=True)
class LatencySnapshot:
    series: dict[str, StageSeries]
    turns_total: int


class LatencyModel:
    """The last `capacity` turn records, as one series per stage with P50/P90 over the same window."""

    def __init__(self, capacity: int = HISTORY_TURNS):
        self._records: deque[tuple[int, TurnRecord]] = deque(maxlen=capacity)
        self._count = 0

    def add(self, record: TurnRecord) -> LatencySnapshot:
        self._count += 1
        self._records.append((self._count, record))
        return self.snapshot()

    def snapshot(self) -> LatencySnapshot:
        out = {}
        for stage in STAGES:
            values = [r.stages_ms.get(stage) for _, r in self._records]
            stats = summarize(values)
            last = values[-1] if values else None
            out[stage] = StageSeries(stage, STAGE_TITLES[stage], tuple(n for n, _ in self._records),
                                     tuple(math.nan if v is None else float(v) for v in values),
                                     last, stats["p50"], stats["p90"], int(stats["n"] or 0))
        return LatencySnapshot(out, self._count)


# ---- turn timeline -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimelineBar:
    row: str  # one of TIMELINE_ROWS
    stage: str  # vad, turn, asr, llm, tts, user_speech, playback, barge_in
    label: str
    queued_ms: float  # all times in ms relative to the end of the user's speech
    start_ms: float
    end_ms: float
    status: str  # ok / error / cancelled / discarded (a speculation not used)
    thin: bool = False  # many tiny units (VAD): drawn as ticks


@dataclass(frozen=True)
class Timeline:
    turn: int
    bars: tuple[TimelineBar, ...]
    markers: tuple[tuple[float, str], ...] = ()  # (ms, label)
    v2v_ms: float | None = None
    span_ms: tuple[float, float] = (0.0, 0.0)  # every bar lies in here
    view_ms: tuple[float, float] = (0.0, 0.0)  # what to show first: up to the reply's first audio and its units
    rows: tuple[str, ...] = TIMELINE_ROWS
    counts: dict[str, int] = field(default_factory=dict)  # bars per row


def end_of_turn_label(decision: dict) -> str:
    """'turn over: complete (Smart Turn 0.97, text -0.01)': why the reply was committed ('Smart Turn 0.83 later':
    it ran after the commit, the words alone ended the turn)."""
    p, text = decision.get("audio_p"), decision.get("text_log10")
    later = " later" if decision.get("audio_after_commit") else ""
    signals = ", ".join(x for x in ("" if p is None else f"Smart Turn {p:.2f}{later}",
                                    "" if text is None else f"text {text:.2f}") if x)
    return f"turn over: {decision.get('reason', '?')}" + (f" ({signals})" if signals else "")


def row_of(span: Span) -> str | None:
    for lane in (CPU_LANE, DEVICE_LANE):  # concurrent mode runs a device lane per stage: device/llm, ...
        if span.lane == lane or span.lane.startswith(lane + "/"):
            return lane
    return span.lane if span.lane in (REMOTE_LANE, MIC_LANE, SPEAKER_LANE, SPECULATION_LANE) else None


def build_timeline(spans: list[Span], record: TurnRecord, margin_s: float = 0.4) -> Timeline:
    """The spans around one turn (its own, plus VAD and anything else that ran meanwhile), as bars per lane."""
    own = [s for s in spans if s.turn == record.turn and s.started_at is not None]
    if not own:
        return Timeline(record.turn, ())
    lo = min(s.started_at for s in own if s.started_at is not None) - margin_s
    hi = max(s.finished_at for s in own) + margin_s / 4
    zero = record.user_speech_end if record.user_speech_end is not None else lo + margin_s
    bars = []
    for s in spans:
        row = row_of(s)
        if row is None or s.started_at is None or s.finished_at < lo or s.started_at > hi or s.label == Label.WARM_UP:
            continue
        ms = lambda t: (t - zero) * 1000  # noqa: E731
        label, status = s.label, s.status
        if s.stage == Stage.SPECULATION:  # a reply prepared in the pause: used, or discarded (drawn dimmed)
            label, status = ("speculation used", "ok") if s.meta.get("used") else ("discarded", "discarded")
        bars.append(TimelineBar(row, s.stage, label, ms(max(s.queued_at, lo)), ms(max(s.started_at, lo)),
                                ms(min(s.finished_at, hi)), status, thin=s.stage == Stage.VAD))
    bars.sort(key=lambda b: b.start_ms)
    markers = [(0.0, "you stopped")]
    v2v = record.stages_ms.get(Latency.V2V)
    if record.decision.get("at") is not None:  # why the turn ended, where it ended
        markers.append(((record.decision["at"] - zero) * 1000, end_of_turn_label(record.decision)))
    if record.first_audio_at is not None:
        markers.append(((record.first_audio_at - zero) * 1000, "agent speaks"))
    counts = {row: sum(1 for b in bars if b.row == row) for row in TIMELINE_ROWS}
    work_end = max([s.finished_at for s in own if s.lane != SPEAKER_LANE] + [record.first_audio_at or lo])
    view = ((lo - zero) * 1000, (min(hi, work_end + 0.6) - zero) * 1000)
    return Timeline(record.turn, tuple(bars), tuple(markers), v2v, ((lo - zero) * 1000, (hi - zero) * 1000),
                    view, counts=counts)
