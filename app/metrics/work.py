"""What the lanes did besides the reply itself, from the span log: the speculations (used, discarded, and the
compute the discarded ones cost) and how long units waited in their lane's queue, per stage (the recognizer's
final decode must not wait behind a long prompt)."""
from __future__ import annotations

from app.metrics.stats import summarize
from app.stages import Label, Stage
from scheduler import CPU_LANE, DEVICE_LANE, REMOTE_LANE, Span

QUEUED_STAGES = (Stage.ASR, Stage.TURN, Stage.LLM, Stage.TTS)


def work_summary(spans: list[Span]) -> dict:
    marks = [s for s in spans if s.stage == Stage.SPECULATION]
    wasted = {s.meta.get("number") for s in marks if not s.meta.get("used")}
    units = [s for s in spans if s.lane.split("/")[0] in (CPU_LANE, DEVICE_LANE, REMOTE_LANE) and
             s.started_at is not None]
    wasted_s = sum(s.run_s for s in units if s.meta.get("speculation") in wasted)
    waits: dict[str, dict] = {stage: summarize(s.wait_s * 1000 for s in units if s.stage == stage)
                              for stage in QUEUED_STAGES}
    waits["asr-finish"] = summarize(s.wait_s * 1000 for s in units if s.label == Label.ASR_FINISH)
    return {"speculations": {"used": sum(1 for s in marks if s.meta.get("used")), "discarded": len(wasted),
                             "discarded_compute_ms": round(wasted_s * 1000, 1),
                             "why_discarded": sorted(str(s.meta.get("why", "")) for s in marks
                                                     if not s.meta.get("used"))},
            "queue_wait_ms": {k: {q: None if v is None else round(v, 1) for q, v in w.items()}
                              for k, w in waits.items()}}


def work_lines(work: dict) -> list[str]:
    """The summary as the bench prints it."""
    spec = work["speculations"]
    waits = work["queue_wait_ms"]
    cell = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
    return [f"speculations: {spec['used']} used, {spec['discarded']} discarded "
            f"({spec['discarded_compute_ms']:.0f} ms of lane time on discarded ones)",
            "queue wait P50/P90 (ms): " + ", ".join(f"{k} {cell(w['p50'])}/{cell(w['p90'])}"
                                                   for k, w in waits.items())]
