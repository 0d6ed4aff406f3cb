"""Plain-text tables of runs: values, ids, names and start times as cells, and the table itself.

Shared by `expkit runs`, the sweep summary and `expkit ensemble`; no MLflow import.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow.entities import Run

#: Characters of a run id shown in tables.
SHORT_ID = 8
#: Longest run name shown in a table cell.
NAME_WIDTH = 48
MISSING = "-"


def format_value(value: Any) -> str:
    """A metric as text: 4 decimals, or 4 significant digits for very small or large values."""
    if value is None:
        return MISSING
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value == 0 or 1e-3 <= abs(value) < 1e6:
            return f"{value:.4f}"
        return f"{value:.4g}"
    return str(value)


def short(run_id: str) -> str:
    return run_id[:SHORT_ID]


def clip(text: str, width: int = NAME_WIDTH) -> str:
    """`text` cut to about `width` characters at a space, never inside a word such as `holdout=1000` (a first word
    longer than `width` is kept whole), with "..." where words were left out."""
    if len(text) <= width:
        return text
    kept: list[str] = []
    for word in text.split(" "):
        if kept and len(" ".join([*kept, word])) > width - 4:
            break
        kept.append(word)
    return " ".join(kept) + " ..."


def started(run: Run) -> str:
    ms = run.info.start_time
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S") if ms else MISSING


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None) -> str:
    """A plain-text table: columns padded to their widest cell, a dashed rule under the header."""
    right = list(right or [False] * len(headers))
    widths = [max(len(str(h)), *(len(str(row[i])) for row in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [str(c).rjust(w) if r else str(c).ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)])
