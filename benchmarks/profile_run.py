"""Per-phase profile of one `expkit train` run, in one process.

    python benchmarks/profile_run.py +experiment=mnist_dense trainer.verbose=0     # prints JSON, one row per phase

Wraps expkit's own functions (and Keras' fit/evaluate/save) with timers, then runs the real CLI
entry point, so the figures are those of the normal code path. Phases that overlap (a background
thread) are timed where they are waited for.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

STARTED = time.perf_counter()
TOTALS: dict[str, float] = defaultdict(float)
COUNTS: dict[str, int] = defaultdict(int)
MARKS: dict[str, float] = {}


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TOTALS[name] += time.perf_counter() - t0
            COUNTS[name] += 1

    return wrapper


def patch(owner: Any, attr: str, name: str) -> None:
    setattr(owner, attr, timed(name, getattr(owner, attr)))


def install() -> None:
    """Wrap the phases of a run. TF and MLflow are imported (and timed) first, so the classes can be wrapped."""
    t0 = time.perf_counter()
    import expkit.app as app
    import expkit.cli  # noqa: F401

    TOTALS["import expkit cli+app (hydra, pydantic)"] = time.perf_counter() - t0
    import expkit.backend as backend

    t0 = time.perf_counter()
    backend.import_tensorflow()
    import keras

    TOTALS["import tensorflow+keras"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    import mlflow  # noqa: F401

    import expkit.tracking.run as run

    TOTALS["import mlflow (+ its SQL store, at the first run set-up)"] = time.perf_counter() - t0
    import expkit.data as data
    import expkit.training.resume as resume
    import expkit.training.runner as runner

    patch(app, "validate_config", "validate config")
    patch(data, "load_splits", "data load+preprocess")
    patch(runner, "configure_runtime", "configure runtime (seed, clear_session)")
    patch(runner, "build_model", "model build")
    patch(runner, "compile_model", "model compile")
    patch(runner.feeding, "batches", "batch pipelines created")
    patch(runner.feeding, "shuffled_epochs", "batch pipelines created")
    patch(keras.Model, "fit", "fit (incl. callbacks)")
    patch(keras.Model, "evaluate", "evaluate (test)")
    patch(keras.Model, "save", "save final model (.keras)")
    patch(keras.Model, "summary", "model summary")
    patch(resume.EpochState, "on_epoch_end", "per-epoch state save")
    patch(keras.callbacks.ModelCheckpoint, "on_epoch_end", "per-epoch best checkpoint")
    patch(keras.callbacks.TensorBoard, "on_epoch_end", "per-epoch tensorboard")
    patch(keras.callbacks.TensorBoard, "on_train_begin", "tensorboard set-up")
    from expkit.tracking import epochs

    patch(epochs.EpochLogger, "on_epoch_end", "tracking: per-epoch logging")
    for method, label in [
        ("create", "tracking: run set-up (store, experiment, run)"),
        ("activate", "tracking: activate run"),
        ("log_params", "tracking: params"),
        ("set_tags", "tracking: tags"),
        ("log_metrics", "tracking: test metrics"),
        ("log_artifacts", "tracking: artifacts (config, summary)"),
        ("log_dataset", "tracking: dataset input"),
        ("log_model", "tracking: model logging (Keras flavor)"),
        ("log_pyfunc_model", "tracking: inference model logging (pyfunc, validated by MLflow)"),
        ("warm_up", "tracking: warm-up in a thread during fit (model flavors, matplotlib)"),
        ("end", "tracking: end run"),
    ]:
        patch(run.TrackedRun, method, label)
    from expkit.tracking.recorder import MlflowRecorder

    patch(MlflowRecorder, "log_plots", "tracking: plots (learning curves, confusion matrix)")
    patch(MlflowRecorder, "log_result", "tracking: all results after fit (metrics, files, plots, models, card, hparams)")

    first_step = keras.callbacks.Callback()

    def on_train_batch_end(batch: int, logs: Any = None) -> None:
        MARKS.setdefault("first training step done (s since start)", time.perf_counter() - STARTED)

    first_step.on_train_batch_end = on_train_batch_end  # type: ignore[method-assign]
    original_fit = keras.Model.fit

    def fit(self: Any, *args: Any, callbacks: Any = None, **kwargs: Any) -> Any:
        return original_fit(self, *args, callbacks=[*(callbacks or []), first_step], **kwargs)

    keras.Model.fit = fit  # type: ignore[method-assign]


def main(args: list[str]) -> dict[str, Any]:
    install()
    from expkit import cli

    sys.argv = ["expkit", "train", *args]
    t0 = time.perf_counter()
    try:
        cli.app()  # not cli.main(), which ends a process that trained without returning here
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise
    wall = time.perf_counter() - STARTED
    TOTALS["expkit train (everything after imports)"] = time.perf_counter() - t0
    named = sum(v for k, v in TOTALS.items() if not k.startswith(("expkit train", "fit (")))
    phases = {k: {"s": round(v, 3), "calls": COUNTS.get(k, 1)} for k, v in TOTALS.items()}
    return {"args": args, "wall_s": round(wall, 2), "phases": phases, "marks": {k: round(v, 2) for k, v in MARKS.items()}, "named_s": named}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=1))
