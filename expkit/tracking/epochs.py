"""The Keras callback that logs each epoch to an MLflow run (imported only once Keras is)."""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import keras
import mlflow
from mlflow.entities import Metric


class EpochLogger(keras.callbacks.Callback):
    """Logs every epoch's metrics, learning rate and duration to one MLflow run, off the training loop's path.

    Epoch e's batch is written by a background thread while epoch e + 1 trains, and is on disk by the
    middle of epoch e + 1 (and before training ends), so a crash loses at most the running epoch's
    record, as before; a resumed run backfills any epoch that its saved state has and MLflow lacks.
    """

    def __init__(self, client: mlflow.MlflowClient, run_id: str) -> None:
        super().__init__()
        self.client, self.run_id = client, run_id
        self._started = 0.0
        self._writer: ThreadPoolExecutor | None = None  # one per fit(): a multi-phase run calls fit() once per phase
        self._pending: Future[Any] | None = None

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._pending is not None and batch >= (self.params.get("steps") or 0) // 2:
            self._wait()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._wait()
        now = int(time.time() * 1000)
        values = {k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
        values["epoch_time_s"] = time.perf_counter() - self._started
        with contextlib.suppress(AttributeError, TypeError, ValueError):
            values["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        metrics = [Metric(k, v, now, epoch) for k, v in values.items()]
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="expkit-epoch-log")
        self._pending = self._writer.submit(self.client.log_batch, self.run_id, metrics=metrics)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._wait()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
