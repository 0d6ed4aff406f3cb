"""Where the CPU of one `expkit train` goes: CPU seconds per part, on the normal code path, in one process.

    python benchmarks/cpu_parts.py +experiment=mnist_dense trainer.verbose=0    # prints JSON

Each part is timed with the CPU clock of the thread that runs it (`time.thread_time`): a part run in a
background thread (the store opening and the warm-up during `fit`) is counted in full, and TensorFlow's
own worker threads (the training itself) are left out of every part. Nested parts are also counted in
their parent. Separate processes (the run opener, git) are counted from `getrusage(RUSAGE_CHILDREN)`.
Unlike `profile_run.py`, nothing is imported ahead of the run, so the run opener works as in a normal run.
"""

from __future__ import annotations

import functools
import json
import resource
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

CPU: dict[str, float] = defaultdict(float)
WALL: dict[str, float] = defaultdict(float)
COUNTS: dict[str, int] = defaultdict(int)
_ACTIVE = threading.local()


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        active = getattr(_ACTIVE, "names", None)
        if active is None:
            active = _ACTIVE.names = set()
        if name in active:  # a recursive or nested call of the same part: counted once, by the outer call
            return fn(*args, **kwargs)
        active.add(name)
        c0, w0 = time.thread_time(), time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            active.discard(name)
            CPU[name] += time.thread_time() - c0
            WALL[name] += time.perf_counter() - w0
            COUNTS[name] += 1

    return wrapper


def patch(owner: Any, attr: str, name: str) -> None:
    original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
    if isinstance(original, property):
        setattr(owner, attr, property(timed(name, original.fget)))  # type: ignore[arg-type]
    else:
        setattr(owner, attr, timed(name, original))


def process_timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Like `timed`, with the CPU of the whole process (all threads, TensorFlow's included) during the call."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        c0, w0 = time.process_time(), time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            CPU[name] += time.process_time() - c0
            WALL[name] += time.perf_counter() - w0
            COUNTS[name] += 1

    return wrapper


def patch_keras() -> None:
    """Keras-side parts, wrapped once TensorFlow is imported (the wrapping must not import it earlier)."""
    import keras

    from expkit.tracking import epochs

    keras.Model.fit = process_timed("keras: fit (whole process, all threads)", keras.Model.fit)  # type: ignore[method-assign]
    keras.Model.evaluate = process_timed("keras: evaluate (whole process, all threads)", keras.Model.evaluate)  # type: ignore[method-assign]
    patch(keras.callbacks.TensorBoard, "on_train_begin", "tensorboard: set-up")
    patch(keras.callbacks.TensorBoard, "on_epoch_end", "tensorboard: per epoch")
    patch(keras.callbacks.TensorBoard, "on_train_end", "tensorboard: end")
    patch(keras.Model, "save", "keras: Model.save (checkpoints, final model, MLflow flavors)")
    from expkit.training import feeding, runner

    patch(feeding, "held", "data: arrays held by tf.data (in place, or copied into a variable)")
    patch(runner, "configure_runtime", "runtime: seed, clear_session")
    patch(epochs.EpochLogger, "on_epoch_end", "tracking: per-epoch logging (training thread)")
    patch(epochs.EpochLogger, "_write", "tracking: per-epoch logging (writer thread)")


def install() -> None:
    c0 = time.thread_time()
    import expkit.app as app
    import expkit.cli  # noqa: F401

    CPU["import expkit cli+app (typer, hydra, omegaconf, pydantic)"] = time.thread_time() - c0
    COUNTS["import expkit cli+app (typer, hydra, omegaconf, pydantic)"] = 1
    import expkit.backend as backend
    import expkit.config.overrides as overrides
    import expkit.tracking.outage as outage
    import expkit.tracking.run as run
    from expkit import launch_check, preflight

    patch(overrides, "check_overrides", "config: pre-check compose (expkit.config.overrides)")
    patch(launch_check, "check_command", "config: launch check")
    patch(app, "run", "hydra: app.run (Hydra's compose + the task)")
    patch(app.HydraTask, "__call__", "hydra:   the task (all after Hydra's compose)")
    patch(app, "validate_config", "config: validate (Hydra's compose done)")
    patch(app, "preflight", "config: preflight")
    import expkit.data as data

    patch(data, "load_splits", "data: load and preprocess")
    original_import = backend.import_tensorflow

    def import_tensorflow() -> Any:
        tf = original_import()
        patch_keras()
        return tf

    app.import_tensorflow = timed("import tensorflow (expkit.backend)", import_tensorflow)
    del preflight
    patch(app, "start_tracking", "tracking: run start in the job (opener launch, or in-process)")
    patch(run.TrackedRun, "_collect_opened_run", "tracking: wait for the opener's run id")
    patch(run.TrackedRun, "client", "tracking: open store in this process (import mlflow, SQL store)")
    patch(run.TrackedRun, "create", "tracking: create run (in this process)")
    patch(outage.Outbox, "warm_up", "tracking: warm-up thread (model flavors, matplotlib, requirements)")
    patch(run.TrackedRun, "log_results", "tracking: log_results (all after fit)")
    patch(run.TrackedRun, "log_plots", "tracking:   plots")
    patch(run.TrackedRun, "log_model", "tracking:   training model (Keras flavor)")
    patch(run.TrackedRun, "log_inference_model", "tracking:   inference model (pyfunc)")
    patch(run.TrackedRun, "show_in_table", "tracking:   runs-table view tag")
    patch(run.TrackedRun, "log_dataset", "tracking: dataset input")
    patch(run.TrackedRun, "log_hparams", "tracking: TensorBoard hparams")
    patch(run.TrackedRun, "ui_link", "tracking: ui link")
    patch(run.TrackedRun, "end", "tracking: end run")
    import expkit.serving.inference as inference

    patch(inference, "write_inference", "tracking:   inference model folder (write_inference)")
    import expkit.tracking.card as card

    patch(card, "render", "tracking:   run card")


def main(args: list[str]) -> dict[str, Any]:
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    install()
    from expkit import cli

    sys.argv = ["expkit", "train", *args]
    w0 = time.perf_counter()
    try:
        cli.app()  # not cli.main(), which ends a process that trained without returning here
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise
    wall = time.perf_counter() - w0
    self_ = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    parts = {k: {"cpu_s": round(CPU[k], 3), "wall_s": round(WALL[k], 3), "calls": COUNTS[k]} for k in CPU}
    return {
        "args": args,
        "wall_s": round(wall, 2),
        "process_cpu_s": round(self_.ru_utime + self_.ru_stime, 2),
        "process_cpu_after_start_s": round(self_.ru_utime + self_.ru_stime - r0.ru_utime - r0.ru_stime, 2),
        "child_processes_cpu_s (opener, git)": round(children.ru_utime + children.ru_stime, 2),
        "parts": parts,
    }


if __name__ == "__main__":
    result = main(sys.argv[1:])
    sys.stdout.flush()
    print("CPU-PARTS " + json.dumps(result))
