"""Ranking runs by a metric: which direction is better, best first, which params differ, what a ranking says."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from expkit.errors import ExpkitError, suggestion

if TYPE_CHECKING:
    from mlflow.entities import Run

#: The metric every run records from its validation data: what selection ranks by unless told otherwise.
OBJECTIVE = "objective"


def resolve_mode(metric: str, mode: str, runs: Sequence[Run] = ()) -> str:
    """'min' or 'max'. `auto`: for the `objective` metric, the direction the runs recorded; else the shared rule (max for accuracy-like)."""
    from expkit.selection.objective import direction

    if (mode or "auto").lower() == "auto" and metric == OBJECTIVE:
        recorded = {r.data.tags.get("objective.mode") for r in runs} - {None}
        if len(recorded) == 1:
            return str(recorded.pop())
    try:
        return direction(metric, mode)
    except ExpkitError:
        raise ExpkitError(f"unknown mode '{mode}'", key="--mode", hint="one of: min, max, auto") from None


def metric_of(run: Run, name: str) -> float | None:
    """The run's (last) value of `name`, or None when absent or NaN."""
    value = run.data.metrics.get(name)
    return None if value is None or math.isnan(value) else float(value)


def key_metrics(runs: Sequence[Run]) -> list[str]:
    """All test_* metrics the runs have, sorted."""
    return sorted({k for r in runs for k in r.data.metrics if k.startswith("test_")})


# Params that differ between any two runs by construction (where the run wrote its files): not a difference in the experiment.
RUN_LOCATION_PARAMS = {"paths.output_dir"}


def differing_params(runs: Sequence[Run]) -> list[str]:
    """Param names whose value is not the same in every run (missing counts as a value), sorted; run locations excluded."""
    names = sorted({k for r in runs for k in r.data.params} - RUN_LOCATION_PARAMS)
    return [k for k in names if len({r.data.params.get(k) for r in runs}) > 1]


def rank(runs: Sequence[Run], metric: str, mode: str) -> list[Run]:
    """Best first by `metric`; runs without it go last, in their original order."""
    has = [r for r in runs if metric_of(r, metric) is not None]
    missing = [r for r in runs if metric_of(r, metric) is None]
    return sorted(has, key=lambda r: metric_of(r, metric) or 0.0, reverse=mode == "max") + missing


def check_metric(runs: Sequence[Run], metric: str, where: str) -> None:
    """Fail, listing the metrics the runs do have, when none of them has `metric`."""
    if any(metric_of(r, metric) is not None for r in runs):
        return
    known = sorted({k for r in runs for k in r.data.metrics})
    hint = suggestion(metric, known, "metrics they have") if known else "they have no metrics at all"
    if metric == OBJECTIVE and known:
        hint = f"a run records an objective only when it has validation data; choose a metric with --metric ({', '.join(known)})"
    raise ExpkitError(f"no metric '{metric}' in {where}", key="--metric", hint=hint)


def rank_metric(runs: Sequence[Run], metric: str, explicit: bool, where: str) -> str | None:
    """The metric to rank by: `metric` when some run has it; None (no ranking) when the default objective is absent.

    An explicit --metric that no run has is an error (a typo must not pass as an unranked table)."""
    if any(metric_of(r, metric) is not None for r in runs):
        return metric
    if explicit:
        check_metric(runs, metric, where)
    return None


def unranked_reason(runs: Sequence[Run]) -> str:
    """Why runs without an objective are shown unranked, and how to rank them anyway."""
    return (
        f"no run has an '{OBJECTIVE}' (a run records one only when it has validation data, e.g. dataset.validation.holdout=N); "
        "rank by another metric with --metric NAME"
    )


def describe_metric(metric: str, runs: Sequence[Run], direction: str) -> str:
    """`objective (val_loss, best epoch, min)`: the objective with what it measured, as the runs recorded it; else `name (min)`."""
    if metric == OBJECTIVE:
        scored = [r for r in runs if metric_of(r, metric) is not None]
        measured = {r.data.tags.get("objective.metric") for r in scored} - {None}
        at = {r.data.tags.get("objective.at") for r in scored} - {None}
        if len(measured) == 1:
            return f"{metric} ({measured.pop()}" + (f", {at.pop()} epoch" if len(at) == 1 else "") + f", {direction})"
    return f"{metric} ({direction})"
