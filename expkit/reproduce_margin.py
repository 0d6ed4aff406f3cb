"""Targets that must beat another target by a clear margin: `beats: {target: NAME, by: MARGIN}` in targets.yaml.

A band checks one preset on its own. A book claim such as "six hidden layers classify the spiral; one layer does not"
is about the difference, so the deep target names the shallow one: its mean must be at least MARGIN better than
NAME's mean (higher, or lower with `higher_is_better: false`), or `expkit reproduce` fails. Selecting a target
selects the one it is compared with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field

from expkit.errors import ExpkitError, suggestion

if TYPE_CHECKING:
    from pathlib import Path

    from expkit.reproduce_stats import Result
    from expkit.reproduce_targets import Target


class Beats(BaseModel):
    """`beats:` of a target: the other target and the least margin between the two means."""

    model_config = ConfigDict(extra="forbid")
    target: str
    by: Annotated[float, Field(ge=0)]
    higher_is_better: bool = True


def check_references(targets: dict[str, Target], path: Path) -> None:
    """Every `beats.target` names another target of the same file."""
    for name, target in targets.items():
        other = target.beats.target if target.beats else None
        if other is not None and (other not in targets or other == name):
            raise ExpkitError(
                f"{path}: target {name}: beats.target: no other target '{other}'",
                hint=suggestion(other, [t for t in targets if t != name], noun="targets"),
            )


def with_compared(selected: list[Target], targets: dict[str, Target]) -> list[Target]:
    """`selected`, plus (just before it) each target a selected one must beat, when it is not selected already."""
    names = {t.name for t in selected}
    out: list[Target] = []
    for target in selected:
        other = target.beats.target if target.beats else None
        if other is not None and other not in names:
            out.append(targets[other])
            names.add(other)
        out.append(target)
    return out


def margin_failure(result: Result, by_name: dict[str, Result]) -> str | None:
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


def apply_margins(results: list[Result]) -> None:
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
