"""Summaries of latency samples: min / P50 / P90 / max, the table the reference agents publish."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def summarize(values: Iterable[float | None]) -> dict[str, float | None]:
    data = np.array([v for v in values if v is not None], dtype=float)
    if len(data) == 0:
        return {"n": 0, "min": None, "p50": None, "p90": None, "max": None}
    return {"n": int(len(data)), "min": float(data.min()), "p50": float(np.percentile(data, 50)),
            "p90": float(np.percentile(data, 90)), "max": float(data.max())}


def table(rows: dict[str, dict], unit: str = "ms") -> str:
    """A fixed-width text table: one row per stage, columns n / min / P50 / P90 / max."""
    lines = [f"{'stage':<18}{'n':>4}{'min':>9}{'P50':>9}{'P90':>9}{'max':>9}  ({unit})"]
    for name, s in rows.items():
        cells = [f"{s[k]:9.0f}" if s.get(k) is not None else f"{'-':>9}" for k in ("min", "p50", "p90", "max")]
        lines.append(f"{name:<18}{s.get('n', 0):>4}" + "".join(cells))
    return "\n".join(lines)
