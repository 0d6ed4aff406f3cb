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
