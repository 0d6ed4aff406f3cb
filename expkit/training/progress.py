"""Terminal output of a training: how much Keras prints, and labelled one-line epochs for sweep jobs."""

from __future__ import annotations

import sys
import time
from typing import Any


def resolve_verbose(verbose: int | str, in_sweep_job: bool) -> int:
    """trainer.verbose=auto: a progress bar on a terminal, one line per epoch when piped, silent Keras in sweep jobs
    (their labelled lines come from `epoch_lines`, so parallel jobs never interleave progress bars)."""
    if verbose != "auto":
        return int(verbose)
    if in_sweep_job:
        return 0
    return 1 if sys.stdout.isatty() else 2


def format_logs(logs: dict[str, Any]) -> str:
    return " - ".join(f"{k} {float(v):.4f}" for k, v in logs.items() if k != "learning_rate")


def epoch_lines(label: str, epochs: int) -> Any:
    """A Keras callback printing `[label] epoch 2/10 - loss 0.31 - val_loss 0.35 (1.2 s)` once per epoch."""
    import keras

    class EpochLines(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            took = time.perf_counter() - getattr(self, "started", time.perf_counter())
            print(f"[{label}] epoch {epoch + 1}/{epochs} - {format_logs(logs or {})} ({took:.1f} s)", flush=True)

    return EpochLines()


def progress_bars(verbose: int, steps: int | None) -> list[Any]:
    """Keras' progress bar for `fit` at this verbosity, counting at most the epoch's `steps` batches ([] when silent).

    With steps_per_execution=N, Keras reports batch `first + N - 1` after each call into TensorFlow, also after an
    epoch's last call, which runs fewer batches: 36 batches at N=16 drew `48/36`. This bar stops at `steps`.
    """
    if not verbose:
        return []
    import keras

    class EpochProgbar(keras.callbacks.ProgbarLogger):
        def set_params(self, params: dict[str, Any]) -> None:
            super().set_params(params)
            self.target = self.target or steps  # known before the first epoch ends, so epoch 1 has a target too

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            super().on_train_batch_end(min(batch, self.target - 1) if self.target else batch, logs)

    return [EpochProgbar()]
