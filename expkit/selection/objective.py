"""The one definition of "better": which metric decides, in which direction, read at which epoch.

Pure Python (no TensorFlow, no MLflow): checkpointing, early stopping, resume, sweeps and `expkit runs` all ask it.
Selection only ever sees training histories (train and validation curves), never test metrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from expkit.errors import ExpkitError

#: Metric names that are better when larger.
MAX_WORDS = ("accuracy", "auc", "precision", "recall", "f1", "iou")
#: Metric names that are never allowed to choose (test data is touched once, at the end).
TEST_PREFIX = "test_"

Mode = Literal["min", "max"]


def direction(metric: str, mode: str = "auto") -> Mode:
    """'min' or 'max' for `metric`; `auto` is max for accuracy-like metrics, else min."""
    mode = (mode or "auto").lower()
    if mode == "auto":
        return "max" if any(word in metric.lower() for word in MAX_WORDS) else "min"
    if mode not in ("min", "max"):
        raise ExpkitError(f"unknown mode '{mode}'", key="objective.mode", hint="one of: min, max, auto")
    return mode  # type: ignore[return-value]


def is_better(value: float, than: float | None, mode: Mode) -> bool:
    """True when `value` improves on `than` (None: anything finite improves)."""
    if not math.isfinite(value):
        return False
    if than is None or not math.isfinite(than):
        return True
    return value < than if mode == "min" else value > than


@dataclass(frozen=True)
class Objective:
    """What a configuration is scored by: a validation metric, its direction, and the epoch it is read at."""

    metric: str = "val_loss"
    mode: Mode = "min"
    at: Literal["best", "last"] = "best"

    @classmethod
    def create(cls, metric: str = "val_loss", mode: str = "auto", at: str = "best") -> Objective:
        if metric.startswith(TEST_PREFIX):
            raise ExpkitError(
                f"'{metric}' is a test metric: test data never chooses a model", key="objective.metric", hint="use a val_* metric"
            )
        if at not in ("best", "last"):
            raise ExpkitError(f"unknown value '{at}'", key="objective.at", hint="one of: best, last")
        return cls(metric, direction(metric, mode), at)  # type: ignore[arg-type]

    @classmethod
    def from_config(cls, node: Any) -> Objective:
        """From the validated `objective` config node (or None: the default)."""
        if node is None:
            return cls()
        get = node.get if isinstance(node, Mapping) else lambda k, d=None: getattr(node, k, d)
        return cls.create(get("metric", "val_loss") or "val_loss", get("mode", "auto") or "auto", get("at", "best") or "best")

    @property
    def worst(self) -> float:
        return math.inf if self.mode == "min" else -math.inf

    def better(self, value: float, than: float | None) -> bool:
        return is_better(value, than, self.mode)

    def best_epoch(self, curve: Sequence[float]) -> int | None:
        """0-based index of the best finite value of `curve` (the first one on ties), or None."""
        best: int | None = None
        for i, value in enumerate(curve):
            if self.better(float(value), None if best is None else float(curve[best])):
                best = i
        return best

    def score(self, history: Mapping[str, Sequence[float]]) -> float:
        """The objective of a training history, read at the best or the last epoch.

        Takes only the history of fit(): test metrics are not an input, so they cannot choose.
        """
        curve = history.get(self.metric)
        if not curve:
            known = ", ".join(sorted(history)) or "none"
            raise ExpkitError(
                f"the objective metric '{self.metric}' was not recorded (metrics: {known})",
                key="objective.metric",
                hint="selection needs validation data: set dataset.validation.holdout (or .split, or folds), "
                "and name a metric the model reports, e.g. val_loss",
            )
        if self.at == "last":
            return float(curve[-1])
        index = self.best_epoch(curve)
        return float(curve[-1]) if index is None else float(curve[index])

    def rank(self, scored: Sequence[tuple[Any, float | None]]) -> list[Any]:
        """Items ordered best first by their score; items without a finite score go last, in their order."""
        good = [(item, s) for item, s in scored if s is not None and math.isfinite(s)]
        rest = [item for item, s in scored if s is None or not math.isfinite(s)]
        good.sort(key=lambda pair: pair[1], reverse=self.mode == "max")
        return [item for item, _ in good] + rest

    def describe(self) -> str:
        return f"{self.metric} ({self.mode}, {self.at} epoch)"


@dataclass(frozen=True)
class TaskResult:
    """What one Hydra job returns to its sweeper: the objective (None unless COMPLETE), the trial state and the run id."""

    score: float | None
    state: Literal["COMPLETE", "PRUNED", "FAIL"] = "COMPLETE"
    run_id: str | None = None
    reason: str = ""


class SweepAborted(BaseException):
    """A multirun stops (sweep.fail_fast, or more failures than sweep.max_failure_rate).

    A BaseException, so launchers do not record it as one more failed job and carry on.
    """


class TrialPruned(Exception):
    """A pruner stopped this trial at an epoch boundary (raised by the per-epoch reporter of an Optuna trial)."""
