"""Targets that must beat another target by a clear margin: `beats: {target: NAME, by: MARGIN}` in targets.yaml.

A band checks one preset on its own. A book claim such as "six hidden layers classify the spiral; one layer does not"
is about the difference, so the deep target names the shallow one: its mean must be at least MARGIN better than
NAME's mean (higher, or lower with `higher_is_better: false`), or `expkit reproduce` fails. The `beats:` entry is read
and checked, and selecting a target selects the one it is compared with, in expkit/reproduce_targets.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from expkit.reproduce_stats import TargetResult
    from expkit.reproduce_targets import Target


def margin_failure(result: TargetResult, by_name: dict[str, TargetResult]) -> str | None:
    """Why `result` does not beat its compared target by the margin (None: it does, or it has no `beats`)."""
    beats = result.target.beats
    if beats is None or result.mean is None or result.skipped:
        return None
    other = by_name.get(beats.target)
    if other is None or other.mean is None:
        why = other.verdict if other is not None else "not run"
        return f"cannot compare with {beats.target} ({why})"
    gap = result.mean - other.mean if beats.higher_is_better else other.mean - result.mean
    if gap >= beats.by:
        return None
    better = "above" if beats.higher_is_better else "below"
    return f"{result.mean:.4f} is {gap:+.4f} {better} {beats.target} ({other.mean:.4f}); the book's claim needs {beats.by:g} or more"


def apply_margins(results: list[TargetResult]) -> None:
    """Set each result's `margin_failure` from the other results of the same reproduction."""
    by_name = {r.target.name: r for r in results}
    for result in results:
        result.margin_failure = margin_failure(result, by_name)


def band_text(target: Target) -> str:
    """The band column: the accept band, and the margin over the compared target."""
    if target.beats is None:
        return str(target.accept)
    sign = "+" if target.beats.higher_is_better else "-"
    return f"{target.accept}; {target.beats.target} {sign} {target.beats.by:g}"
