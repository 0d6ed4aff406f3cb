"""The Keras callback that logs each epoch to an MLflow run (imported only once Keras is)."""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import keras


class EpochLogger(keras.callbacks.Callback):
    """Logs every epoch's metrics, learning rate and duration to one MLflow run, off the training loop's path.

    `run` is a TrackedRun or ChildRun. Once the first training call is done, a background thread
    opens its store (the job may not have imported MLflow yet), then writes each epoch's batch while
    the next epoch trains; another imports what logging the results will need (`run.warm_up`).
    Epoch e's record is on disk by the middle of epoch e + 1 (and before training ends), so a crash
    loses at most the running epoch's record; a resumed run backfills any epoch that its saved state has and MLflow lacks.
    """

    def __init__(self, run: Any) -> None:
        super().__init__()
        self.run = run
        self._started = 0.0
        self._writer: ThreadPoolExecutor | None = None  # one per fit(): a multi-phase run calls fit() once per phase
        self._opening: Future[Any] | None = None
        self._warming: Future[Any] | None = None
        self._pending: list[Future[Any]] = []

    def _wait(self) -> None:
        """Wait for the queued writes; raise what one of them raised."""
        pending, self._pending = self._pending, []
        for write in pending:
            write.result()

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="expkit-epoch-log")

    def _open(self) -> None:
        """Open the store (the epochs' writes queue behind it) and warm up, each in a thread of its own.

        Called once the first training call has returned: before it, Keras traces the train step in
        Python, and these threads would take the GIL from it and delay the first step.
        """
        if self._opening is not None or self._writer is None:
            return
        from expkit.tracking.outage import outbox  # a tracking server that does not answer is opened by the first delivery

        self._opening = self._writer.submit(lambda: outbox(self.run).open())
        warming = ThreadPoolExecutor(1, thread_name_prefix="expkit-warm-up")
        self._warming = warming.submit(lambda: outbox(self.run).warm_up())
        warming.shutdown(wait=False)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._open()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._pending and batch >= (self.params.get("steps") or 0) // 2:
            self._wait()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._wait()  # raises what the previous write raised
        values = {k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
        values["epoch_time_s"] = round(time.perf_counter() - self._started, 3)
        with contextlib.suppress(AttributeError, TypeError, ValueError):
            values["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        if self._writer is None:
            self.on_train_begin()
        self._open()
        assert self._writer is not None
        self._pending.append(self._writer.submit(self._write, epoch, values, int(time.time() * 1000)))

    def _write(self, epoch: int, values: dict[str, float], timestamp: int) -> None:
        """Deliver the epoch through the run's outbox: while a tracking server is unreachable, epochs wait there, in order."""
        from mlflow.entities import Metric

        from expkit.tracking.outage import outbox
        from expkit.tracking.values import readable

        outbox(self.run).send([Metric(k, readable(v), timestamp, epoch) for k, v in values.items()])

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        for started in (self._opening, self._warming):
            if started is not None:
                started.result()
        self._opening = self._warming = None
        self._wait()
