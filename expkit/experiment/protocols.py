"""Protocols: how one configuration is scored on validation data, registered by name (`@protocol("kfold")`).

- holdout: one training run on the configured validation split, then test once.
- kfold:   K training runs, fold k validating on the k-th slice of the training data; the score is the mean.
- retrain: a validation run finds the best epoch; a fresh model trains that many epochs on train+val, then test once.

Each protocol returns the objective computed from training histories only. Test data is evaluated after
the score is fixed, by `evaluate_test`, and its metrics are logged, never returned. A protocol records through
its context's `Recorder` only: nested runs come from `recorder.child(...)`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from expkit.config.schema import ExperimentConfig
from expkit.errors import ExpkitError
from expkit.experiment.recorder import NullRecorder, Recorder
from expkit.registry import Registry
from expkit.selection.objective import Objective

NO_VALIDATION_HINT = "set dataset.validation.holdout (e.g. 0.2), dataset.validation.split or dataset.validation.folds"

#: Protocol name -> function(Context) -> Result.
PROTOCOLS = Registry("protocol")


def protocol(name: str) -> Callable[[Callable[[Context], Result]], Callable[[Context], Result]]:
    """Decorator: register a protocol under the name `protocol=NAME` selects."""
    return PROTOCOLS.register(name)


@dataclass
class Context:
    """What a protocol needs: the checked config, where to write, its recorder, and per-epoch hooks."""

    config: ExperimentConfig
    output_dir: Path
    objective: Objective
    recorder: Recorder = field(default_factory=NullRecorder)
    stop: Any = None
    resume_from: Any = None
    # Needs a validation score (a sweep, or a protocol that selects): no validation data is then an error.
    selecting: bool = False
    # Extra per-epoch Keras callbacks built from the objective (e.g. a pruning reporter): called with the Objective.
    epoch_hooks: list[Callable[[Objective], Any]] = field(default_factory=list)
    # Where the job's TensorBoard logs go (named after its recorded run); None: <output_dir>/tensorboard.
    tensorboard_dir: Path | None = None

    def callbacks(self, recorder: Recorder | None = None) -> list[Any]:
        """The recorder's epoch callback (if it has one) and the hooks' callbacks."""
        recording = (recorder or self.recorder).callback()
        return [*([recording] if recording is not None else []), *(hook(self.objective) for hook in self.epoch_hooks)]


@dataclass
class Result:
    """A protocol's result: the objective (validation only; None without validation data) and what was trained and tested
    (`outcome`: None when the protocol tests no model, as k-fold)."""

    score: float | None
    outcome: Any = None
    splits: Any = None
    summary: dict[str, float] = field(default_factory=dict)


def load(config: ExperimentConfig, *, fold: int | None = None, dataset: Any = None) -> Any:
    from expkit.data import load_splits

    return load_splits(
        dataset or config.dataset, data_dir=config.paths.data_dir, seed=config.seed, **({"fold": fold} if fold is not None else {})
    )


def require_validation(splits: Any, ctx: Context) -> None:
    if ctx.selecting and splits.x_val is None:
        raise ExpkitError(
            f"choosing by the objective {ctx.objective.metric} needs validation data, and this config has none",
            key="dataset.validation",
            hint=NO_VALIDATION_HINT + "; test data never chooses",
        )


@protocol("holdout")
def holdout(ctx: Context) -> Result:
    """One fit on the training split, scored on the validation split, then tested once."""
    from expkit.training.runner import evaluate_test, train_and_evaluate

    config = ctx.config
    splits = load(config)
    require_validation(splits, ctx)
    ctx.recorder.set_tags({"dataset.fingerprint": splits.fingerprint})
    outcome = train_and_evaluate(
        config,
        splits,
        ctx.output_dir,
        ctx.callbacks(),
        stop=ctx.stop,
        resume_from=ctx.resume_from,
        objective=ctx.objective,
        test=False,
        tensorboard_dir=ctx.tensorboard_dir,
    )
    score = ctx.objective.score(outcome.history) if splits.x_val is not None else None
    evaluate_test(
        outcome, splits, ctx.output_dir, config.trainer.batch_size, config=config, objective=score, objective_metric=ctx.objective.metric
    )
    return Result(score, outcome, splits)


@protocol("retrain")
def retrain(ctx: Context) -> Result:
    """Find the best epoch on validation, then train a fresh model that many epochs on train+val and test it once."""
    from expkit.training.runner import evaluate_test, train_and_evaluate

    config = ctx.config
    ctx.selecting = True
    splits = load(config)
    require_validation(splits, ctx)
    select_dir = ctx.output_dir / "select"
    with nested(ctx, "select", {"protocol.phase": "select"}) as child:
        outcome = train_and_evaluate(config, splits, select_dir, ctx.callbacks(child), stop=ctx.stop, objective=ctx.objective, test=False)
    score = ctx.objective.score(outcome.history)
    curve = outcome.history.get(ctx.objective.metric, [])
    best_epochs = (ctx.objective.best_epoch(curve) if ctx.objective.at == "best" else len(curve) - 1) or 0
    best_epochs += 1
    print(f"retrain: best epoch {best_epochs} by {ctx.objective.metric} = {score:.4f}; training on train+val for {best_epochs} epochs")

    full = load(config, dataset=config.dataset.model_copy(update={"validation": type(config.dataset.validation)()}))
    with nested(ctx, "retrain", {"protocol.phase": "retrain"}) as child:
        final = train_and_evaluate(
            config, full, ctx.output_dir, ctx.callbacks(child), stop=ctx.stop, objective=ctx.objective, test=False, epochs=best_epochs
        )
        evaluate_test(final, full, ctx.output_dir, config.trainer.batch_size, config=config, objective=score, best_epoch=best_epochs)
        child.log_metrics(final.test_metrics)
    return Result(score, final, full, {"retrain.epochs": float(best_epochs)})


@protocol("kfold")
def kfold(ctx: Context) -> Result:
    """K fits, fold k validating on the k-th slice; the score is the mean fold score (std logged too). No test evaluation."""
    from expkit.training.runner import train_and_evaluate

    config = ctx.config
    ctx.selecting = True
    folds = int(config.dataset.validation.folds or 0)
    scores: list[float] = []
    histories: list[dict[str, list[float]]] = []
    splits = None
    for k in range(folds):  # k is 0-based for the data; everything a user reads (console, MLflow, folders) counts from 1
        splits = load(config, fold=k)
        print(f"fold {k + 1}/{folds}: {len(splits.x_train)} training, {len(splits.x_val)} validation samples", file=sys.stderr)
        with nested(ctx, f"fold {k + 1}", {"protocol.fold": str(k + 1)}) as child:
            outcome = train_and_evaluate(
                config, splits, ctx.output_dir / f"fold-{k + 1}", ctx.callbacks(child), stop=ctx.stop, objective=ctx.objective, test=False
            )
            score = ctx.objective.score(outcome.history)
            child.log_metrics({"objective": score})
        scores.append(score)
        histories.append(outcome.history)
        print(f"fold {k + 1}/{folds}: {ctx.objective.metric} = {score:.4f}", file=sys.stderr)
    mean, std = float(np.mean(scores)), float(np.std(scores))
    summary = {f"kfold.{ctx.objective.metric}.mean": mean, f"kfold.{ctx.objective.metric}.std": std}
    summary.update({f"kfold.{ctx.objective.metric}.fold{k}": s for k, s in enumerate(scores, start=1)})
    ctx.recorder.log_metrics(summary)
    ctx.recorder.log_curves(average_histories(histories), prefix="kfold_mean_", folder="kfold")
    print(f"kfold: {ctx.objective.metric} = {mean:.4f} ± {std:.4f} over {folds} folds ({', '.join(f'{s:.3f}' for s in scores)})")
    return Result(mean, None, splits, summary)  # no model is tested: the folds' models were scored on validation only


def average_histories(histories: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    """Per-epoch mean over folds of every metric all folds recorded (up to the shortest fold)."""
    keys = set.intersection(*(set(h) for h in histories)) if histories else set()
    averaged = {}
    for key in sorted(keys):
        length = min(len(h[key]) for h in histories)
        averaged[key] = [float(np.mean([h[key][e] for h in histories])) for e in range(length)]
    return averaged


class nested:
    """A nested run under the job's (a fold or a phase), named `<config name> <label>`: FINISHED on success, else FAILED."""

    def __init__(self, ctx: Context, label: str, tags: dict[str, str]) -> None:
        self.child = ctx.recorder.child(f"{ctx.config.name} {label}", tags)

    def __enter__(self) -> Recorder:
        return self.child

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        self.child.end("FINISHED" if kind is None else "FAILED")


def run_protocol(ctx: Context) -> Result:
    """Score the configuration with the protocol the config names."""
    run: Callable[[Context], Result] = PROTOCOLS.get(ctx.config.protocol, key="protocol")
    return run(ctx)
