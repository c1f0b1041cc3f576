"""The headless report: per turn what was said and heard and how long each stage took (from the spans), the
voice-to-voice gap measured again on the output WAV, and a summary table like the reference agents publish."""
from __future__ import annotations

import json
from pathlib import Path

from app.headless.runner import AGREEMENT_MS, HeadlessResult
from app.metrics.stats import summarize, table
from app.metrics.turns import STAGES
from app.stages import Latency

REPORT_STAGES = tuple(s for s in STAGES if s is not Latency.V2V)  # V2V has columns of its own


def build_report(result: HeadlessResult) -> dict:
    turns = []
    disagreements = []
    for i, (record, wave) in enumerate(zip(result.records, result.waveform_v2v_ms)):
        v2v = record.stages_ms.get(Latency.V2V)
        turn = {
            "turn": i + 1,
            "transcript": record.transcript,
            "reply": record.reply,
            "interrupted": record.interrupted,
            "v2v_ms": _r(v2v),
            "v2v_waveform_ms": _r(wave),
            "stages_ms": {k: _r(record.stages_ms.get(k)) for k in REPORT_STAGES},
            "end_of_turn": {k: v for k, v in record.decision.items() if k != "at"},  # why, and the wait added
        }
        if record.barge_in_ms is not None:
            turn["barge_in_silence_ms"] = _r(record.barge_in_ms)
        if v2v is not None and wave is not None and abs(v2v - wave) > AGREEMENT_MS:
            disagreements.append(i + 1)
            turn["v2v_agreement"] = f"span and waveform V2V differ by {abs(v2v - wave):.0f} ms (> {AGREEMENT_MS:.0f})"
        turns.append(turn)
    summary: dict[str, dict] = {stage: _rs(summarize(r.stages_ms.get(stage) for r in result.records))
                                for stage in STAGES}
    summary["v2v_waveform"] = _rs(summarize(result.waveform_v2v_ms))
    report = {
        "turns": turns,
        "summary": summary,
        "engines": result.engines,
        "v2v_agreement_ms": AGREEMENT_MS,
        "v2v_disagreeing_turns": disagreements,
        "notes": result.notes,
        "device_max_lateness_ms": round(result.max_lateness_ms, 1),
        "agent_paused": result.agent_paused,
        "work": result.work,
        "echo": None if result.echo is None else {"delay_ms": _r(result.echo.delay_ms),
                                                  "reduction_db": _r(result.echo.reduction_db)},
    }
    return report


def summary_table(report: dict) -> str:
    rows = {stage: report["summary"][stage] for stage in (*STAGES, "v2v_waveform")}
    return table(rows)


def write_report(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


def _rs(s: dict) -> dict:
    return {k: (_r(v) if k != "n" else v) for k, v in s.items()}
