"""Feed in-memory arrays to Keras through tf.data: batches are gathered and cast in TensorFlow's own threads.

The same samples in the same order as `ArrayBatches` (epoch e uses the permutation seeded by
(seed, e), so a resumed run sees the order of an uninterrupted one), without a Python call per
batch. Compact uint8/bool storage stays compact; only each batch is cast to float32.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

COMPACT_TF = ("uint8", "bool", "int8")
PARALLEL_BATCHES = 2
PREFETCH_BATCHES = 2


def num_samples(arrays: Any) -> int:
    import tensorflow as tf

    return len(tf.nest.flatten(arrays)[0])


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The sample order of one epoch: the same permutation `ArrayBatches` uses."""
    return np.random.default_rng([seed, int(epoch)]).permutation(n).astype(np.int64)


def batches(
    x: Any,
    y: Any | None,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    first_epoch: int = 0,
    end_epoch: int | None = None,
    prefetch: bool = True,
    threads: int | None = None,
) -> Any:
    """A tf.data.Dataset of (x, y) batches (or x alone when `y` is None).

    With `shuffle`, the dataset runs epoch `first_epoch`, then the next, each in its own order, up
    to `end_epoch` (exclusive; None: endless); pass `fit(steps_per_epoch=steps(x, batch_size))`.
    Without, it is one pass in order.

    A dataset that ends with training matters: the epoch orders come from a `tf.numpy_function`, and
    an endless iterator destroyed at the end of `fit()` (GIL held) could wait seconds for a prefetch
    thread that was computing the next, unused order (GIL wanted).
    """
    import tensorflow as tf

    n = num_samples(x)
    # Held in variables: a tf.data function captures a variable's handle, where a constant would be copied into the graph.
    data = tf.nest.map_structure(lambda a: tf.Variable(a, trainable=False), x if y is None else (x, y))

    def gather(index: Any) -> Any:
        def pick(a: Any) -> Any:
            part = tf.gather(a, index)
            return tf.cast(part, tf.float32) if a.dtype.name in COMPACT_TF else part

        return tf.nest.map_structure(pick, data)

    if shuffle:

        def one_epoch(epoch: Any) -> Any:
            order = tf.numpy_function(lambda e: epoch_order(seed, int(e), n), [epoch], tf.int64, stateful=False)
            order.set_shape([n])
            return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

        last = np.iinfo(np.int64).max if end_epoch is None else end_epoch
        index = tf.data.Dataset.range(first_epoch, last).flat_map(one_epoch)
    else:
        index = tf.data.Dataset.range(n).batch(batch_size)
    # A few batches ahead are enough to keep the model busy; an autotuned buffer can hold hundreds of MB of float32 batches.
    dataset = index.map(gather, num_parallel_calls=PARALLEL_BATCHES if prefetch else None, deterministic=True)
    if prefetch:
        dataset = dataset.prefetch(PREFETCH_BATCHES)
    options = tf.data.Options()
    if threads:
        options.threading.private_threadpool_size = threads
        options.threading.max_intra_op_parallelism = 1
    return dataset.with_options(options)


def steps(x: Any, batch_size: int) -> int:
    """Batches per epoch."""
    return math.ceil(num_samples(x) / batch_size)


def steps_per_execution(requested: int, steps_per_epoch: int, callbacks: list[Any] = ()) -> int:  # type: ignore[assignment]
    """How many batches to run per call into TensorFlow.

    The largest divisor of `steps_per_epoch` not above `requested`, so one call never spans two
    epochs; 1 if a callback of the user's own (not Keras') acts on single batches, so it still sees each one.
    """
    if any(batch_hooks(c) and not type(c).__module__.startswith("keras.") for c in callbacks):
        return 1
    return max(d for d in range(1, min(requested, steps_per_epoch) + 1) if steps_per_epoch % d == 0)


def batch_hooks(callback: Any) -> bool:
    """Whether a Keras callback overrides any per-batch training hook."""
    import keras

    base = keras.callbacks.Callback
    return any(
        getattr(type(callback), h) is not getattr(base, h)
        for h in ("on_train_batch_begin", "on_train_batch_end", "on_batch_end", "on_batch_begin")
    )
