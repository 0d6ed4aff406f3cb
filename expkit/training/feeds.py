"""Arrays in memory as feeds for fit/evaluate (the `Feeds` interface of expkit.data.splits), through tf.data.

Streamed splits (image folders, large tables) feed themselves; array `Splits` hand themselves to `ArrayFeeds`
(`splits.feeds(ArrayFeeds)`), so the runner never asks which kind of data it has.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from expkit.data.splits import Splits, take
from expkit.training import feeding


class ArrayFeeds:
    """Batches of a `Splits`' arrays, gathered and cast in TensorFlow's threads (`training.feeding`)."""

    epoch_ends = True  # one pass over the arrays per epoch, so a multi-step call may stop at its end

    def __init__(self, splits: Splits) -> None:
        self.splits = splits

    def arrays(self, name: str) -> tuple[Any, Any]:
        s = self.splits
        return {"train": (s.x_train, s.y_train), "validation": (s.x_val, s.y_val), "test": (s.x_test, s.y_test)}[name]

    def steps(self, name: str, batch_size: int) -> int:
        return feeding.steps(self.arrays(name)[0], batch_size)

    def feed(self, name: str, batch_size: int, *, prefetch: bool = True, threads: int | None = None, share: bool = True) -> Any:
        x, y = self.arrays(name)
        return feeding.batches(x, y, batch_size, prefetch=prefetch, threads=threads, share=share)

    def training_feed(
        self,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        epoch: int,
        epochs: int,
        prefetch: bool = True,
        threads: int | None = None,
        share: bool = True,
    ) -> tuple[Any, int | None, list[Any]]:
        """The arrays end with each epoch; shuffled, their order is set by a callback as each epoch begins."""
        s = self.splits
        if not shuffle:
            return feeding.batches(s.x_train, s.y_train, batch_size, prefetch=prefetch, threads=threads, share=share), None, []
        # Epoch e of a run trains on order e + 1, as it did with Keras' per-epoch data sources (resumed runs stay identical).
        data, orders = feeding.shuffled_epochs(
            s.x_train, s.y_train, batch_size, seed=seed, order_offset=1, prefetch=prefetch, threads=threads, share=share
        )
        return data, None, [orders]

    def input_example(self, count: int) -> np.ndarray:
        return take(self.splits.x_test, slice(count))  # type: ignore[return-value]
