"""A callback that crashes or interrupts its own training process once, for resume tests."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import keras


class SignalSelf(keras.callbacks.Callback):
    """Sends `signum` to this process in epoch `epoch` (at its end for SIGKILL, after batch 2 otherwise), once per marker file."""

    def __init__(self, epoch: int, signum: int, marker: str) -> None:
        super().__init__()
        self.epoch, self.signum, self.marker = epoch, signum, Path(marker)
        self._current = -1

    def _fire(self) -> None:
        if not self.marker.exists():
            self.marker.write_text("fired")
            os.kill(os.getpid(), self.signum)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._current = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.signum != signal.SIGKILL and self._current == self.epoch and batch == 2:
            self._fire()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.signum == signal.SIGKILL and epoch == self.epoch:
            self._fire()


class KillAfterStateSave(keras.callbacks.Callback):
    """SIGKILLs this process in epoch `epoch` right after its resumable state (state.json) is in place, before the
    tracking callback logs that epoch to MLflow: the crash `TrackedRun.backfill` exists for. Once per marker file.

    It wraps `expkit.training.resume.write_json_atomic`, which `EpochState` calls to replace state.json.
    """

    def __init__(self, epoch: int, marker: str) -> None:
        super().__init__()
        from expkit.training import resume

        original, marker_path = resume.write_json_atomic, Path(marker)

        def write_then_kill(path: Path, data: Any) -> None:
            original(path, data)
            if path.name == resume.STATE_FILE and data.get("epoch") == epoch and not marker_path.exists():
                marker_path.write_text("fired")
                os.kill(os.getpid(), signal.SIGKILL)

        resume.write_json_atomic = write_then_kill
