"""A callback that makes each epoch last at least `seconds` and marks its start in `folder` (epoch-1, epoch-2, ...): outage tests
kill and restart the tracking server at a known point of training."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import keras


class PacedEpochs(keras.callbacks.Callback):
    def __init__(self, seconds: float, folder: str) -> None:
        super().__init__()
        self.seconds, self.folder = seconds, Path(folder)
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.monotonic()
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"epoch-{epoch + 1}").write_text(str(time.time()))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        time.sleep(max(0.0, self.seconds - (time.monotonic() - self._started)))
