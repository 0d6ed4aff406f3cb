"""Crash-safe training state and graceful stops.

After every epoch, `EpochState` writes the model and optimizer weights to a new file and then
atomically replaces `state.json`, which names that file and holds the epoch's logs. A crash at
any moment leaves the previous complete state in place; `kill -9` loses at most the running epoch.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import keras

from expkit.selection.objective import Mode, is_better

STATE_FILE = "state.json"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file, fsync, then rename over `path`."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class TrainingState:
    """The last completed epoch (0-based), its weights file, and the logs of every epoch so far."""

    epoch: int
    weights: Path
    history: dict[str, list[float]] = field(default_factory=dict)
    best: float | None = None

    @classmethod
    def load(cls, state_dir: Path) -> TrainingState | None:
        path = state_dir / STATE_FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        weights = state_dir / data["weights"]
        if not weights.is_file():
            return None
        return cls(epoch=int(data["epoch"]), weights=weights, history=data.get("history", {}), best=data.get("best"))


class EpochState(keras.callbacks.Callback):
    """Saves a resumable state (weights + optimizer + epoch + logs) at the end of every epoch."""

    def __init__(self, state_dir: Path, history: dict[str, list[float]], monitor: str, best: float | None, mode: Mode = "min") -> None:
        super().__init__()
        self.state_dir = state_dir
        self.history = {k: list(v) for k, v in history.items()}
        self.monitor = monitor
        self.mode = mode
        self.best = best
        state_dir.mkdir(parents=True, exist_ok=True)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        current = (logs or {}).get(self.monitor)
        if current is not None and is_better(float(current), self.best, self.mode):
            self.best = float(current)
        name = f"epoch-{epoch:05d}.weights.h5"
        tmp = self.state_dir / f".tmp-{name}"
        self.model.save_weights(tmp, overwrite=True)
        os.replace(tmp, self.state_dir / name)
        write_json_atomic(self.state_dir / STATE_FILE, {"epoch": epoch, "weights": name, "history": self.history, "best": self.best})
        for old in self.state_dir.glob("epoch-*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)


class StopRequest:
    """SIGINT/SIGTERM handling: the first signal asks training to stop at the next batch; a second aborts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.model: Any = None  # the model in fit(), told to stop at its next batch boundary
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum
        if self.model is not None:
            self.model.stop_training = True
        print(f"\n{signal.Signals(signum).name}: stopping after this batch (again to abort now)", flush=True)

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or 0)


class StopOnRequest(keras.callbacks.Callback):
    """Ends fit() at the next batch boundary once a stop was requested.

    The signal handler sets `model.stop_training` itself, so this callback needs no per-batch hook
    (a batch hook would make Keras wait for every batch's logs instead of dispatching callbacks asynchronously).
    """

    def __init__(self, request: StopRequest) -> None:
        super().__init__()
        self.request = request

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.request.model = self.model
        if self.request.signum is not None:
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.request.model = None


class CompleteEpochsOnly(keras.callbacks.Callback):
    """Forwards epoch ends to `inner` callbacks only for epochs that ran to the end.

    Keras still calls on_epoch_end after a stop at a batch boundary; a cut-short epoch must not
    be checkpointed, saved as resumable state, or logged as a finished epoch.
    """

    def __init__(self, request: StopRequest, inner: list[keras.callbacks.Callback]) -> None:
        super().__init__()
        self.request, self.inner = request, inner

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        for callback in self.inner:
            callback.set_model(model)

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        for callback in self.inner:
            callback.set_params(params)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        for callback in self.inner:
            callback.on_train_begin(logs)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for callback in self.inner:
            callback.on_epoch_begin(epoch, logs)

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        for callback in self.inner:
            callback.on_train_batch_begin(batch, logs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.request.signum is None:
            for callback in self.inner:
                callback.on_epoch_end(epoch, logs)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        for callback in self.inner:
            callback.on_train_end(logs)


class Interrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after saving its last complete epoch."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
