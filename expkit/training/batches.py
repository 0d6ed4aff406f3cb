"""Feed numpy arrays to Keras one batch at a time, so compact uint8 encodings are never copied whole."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

COMPACT = (np.uint8, np.bool_, np.int8)


def as_model_input(a: Any) -> Any:
    """Cast compact (uint8/bool) storage to float32 for one batch; leave other dtypes alone. Named arrays: each one."""
    if isinstance(a, dict):
        return {k: as_model_input(v) for k, v in a.items()}
    return a.astype(np.float32) if a.dtype in COMPACT else a


def _rows(a: Any, idx: Any) -> Any:
    return {k: v[idx] for k, v in a.items()} if isinstance(a, dict) else a[idx]


def _length(a: Any) -> int:
    return len(next(iter(a.values()))) if isinstance(a, dict) else len(a)


class ArrayBatches(keras.utils.PyDataset):
    """Batches of (x, y) from in-memory arrays, or from dicts of arrays keyed by input / output name.

    With `shuffle`, epoch e uses the permutation seeded by (seed, e), so a resumed run sees the
    same sample order as an uninterrupted one. Pass `fit(shuffle=False)`: this class shuffles.
    """

    def __init__(self, x: Any, y: Any, batch_size: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0) -> None:
        super().__init__()
        self.x, self.y, self.batch_size, self.shuffle, self.seed = x, y, batch_size, shuffle, seed
        self.epoch = epoch
        self._order = self._permutation()

    def __len__(self) -> int:
        return math.ceil(_length(self.x) / self.batch_size)

    def __getitem__(self, index: int) -> Any:
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        idx = self._order[rows] if self._order is not None else rows
        xb = as_model_input(_rows(self.x, idx))
        return xb if self.y is None else (xb, as_model_input(_rows(self.y, idx)))

    def _permutation(self) -> np.ndarray | None:
        return np.random.default_rng([self.seed, self.epoch]).permutation(_length(self.x)) if self.shuffle else None

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._order = self._permutation()
