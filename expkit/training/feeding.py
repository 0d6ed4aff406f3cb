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
# Arrays this big are read by TensorFlow in place (see `held`) when their memory allows it; smaller ones are copied.
SHARE_MIN_BYTES = 16 * 2**20
SHAREABLE = ("uint8", "int8", "int32", "int64", "float16", "float32", "float64")
ALIGNMENT = 64  # what TensorFlow's kernels need of a tensor's buffer (Eigen)


def shareable(a: Any) -> bool:
    """Whether TensorFlow can use this numpy array's memory as a tensor's: C-contiguous, aligned, writeable, a plain dtype."""
    return (
        isinstance(a, np.ndarray)
        and a.nbytes >= SHARE_MIN_BYTES
        and a.dtype.name in SHAREABLE
        and a.flags.c_contiguous
        and a.flags.writeable
        and a.ctypes.data % ALIGNMENT == 0
    )


def aligned_copy(a: np.ndarray) -> np.ndarray:
    """A C-contiguous, writeable copy of `a` whose data starts on an ALIGNMENT-byte boundary."""
    raw = np.empty(a.nbytes + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    out = raw[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
    np.copyto(out, a)
    return out


def held(a: Any, share: bool) -> tuple[Any, bool]:
    """The array as the dataset function reads it, and whether TensorFlow reads it in place (no variable).

    A big aligned array (imdb's multi-hot matrix: `expkit.data.preprocess.aligned_zeros`) becomes a tensor over
    the same memory through DLPack, so it is not held twice. A big array of such a dtype that TensorFlow cannot use
    as it is (numpy aligns large arrays to 16 bytes, e.g. mnist's scaled float32 pixels) is first copied once into an
    aligned buffer, which is then read in place: one memcpy, where a variable cost 0.45 s of CPU for mnist's 179 MB
    (benchmarks/CHANGES.md, twelfth pass). Anything else (small, other dtypes) is copied into a variable: a tf.data
    function captures a variable's handle, where a captured tensor could be copied into the graph.
    """
    import tensorflow as tf

    big = isinstance(a, np.ndarray) and a.nbytes >= SHARE_MIN_BYTES and a.dtype.name in SHAREABLE
    if share and big:
        a = a if shareable(a) else aligned_copy(a)
        return tf.experimental.dlpack.from_dlpack(a.__dlpack__()), True
    return tf.Variable(a, trainable=False), False


def num_samples(arrays: Any) -> int:
    import tensorflow as tf

    return len(tf.nest.flatten(arrays)[0])


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The sample order of one epoch: the same permutation `ArrayBatches` uses."""
    return np.random.default_rng([seed, int(epoch)]).permutation(n).astype(np.int64)


def batches(x: Any, y: Any | None, batch_size: int, *, prefetch: bool = True, threads: int | None = None, share: bool = True) -> Any:
    """A tf.data.Dataset of (x, y) batches (or x alone when `y` is None): one pass, in order."""
    import tensorflow as tf

    return _dataset(x, y, batch_size, lambda start, stop: tf.range(start, stop, dtype=tf.int64), prefetch, threads, share)


def shuffled_epochs(
    x: Any,
    y: Any,
    batch_size: int,
    *,
    seed: int,
    order_offset: int = 1,
    prefetch: bool = True,
    threads: int | None = None,
    share: bool = True,
) -> tuple[Any, Any]:
    """Training batches that follow one seeded order per epoch, and the Keras callback that sets it.

    Keras epoch e draws its samples in `epoch_order(seed, e + order_offset)`: the callback writes that
    order into a variable when the epoch begins, before Keras starts iterating the dataset. Each pass
    over the dataset is one epoch, so a call running several steps (`steps_per_execution`) stops at the
    epoch's end, and no tf.data thread ever calls back into Python (an endless stream with a
    `numpy_function` per epoch stalled seconds on teardown at the end of fit()).
    """
    import keras
    import tensorflow as tf

    n = num_samples(x)
    order = tf.Variable(epoch_order(seed, order_offset, n), trainable=False)

    class EpochOrders(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            order.assign(epoch_order(seed, epoch + order_offset, n))

    dataset = _dataset(x, y, batch_size, lambda start, stop: order[start:stop], prefetch, threads, share)
    return dataset, EpochOrders()


def _dataset(x: Any, y: Any | None, batch_size: int, rows: Any, prefetch: bool, threads: int | None, share: bool = True) -> Any:
    """Batch b gathers `rows(start, stop)` of the arrays (see `held`) and casts compact dtypes to float32.

    `share`: big aligned arrays are read in place (False under a distribution strategy, whose dataset rewrite
    would serialize a captured tensor into the graph).
    """
    import tensorflow as tf

    n = num_samples(x)
    structure = x if y is None else (x, y)
    holders = [held(a, share) for a in tf.nest.flatten(structure)]
    data = tf.nest.pack_sequence_as(structure, [tensor for tensor, _ in holders])

    def gather(batch: Any) -> Any:
        start = batch * batch_size
        index = rows(start, tf.minimum(start + batch_size, n))

        def pick(a: Any) -> Any:
            part = tf.gather(a, index)
            return tf.cast(part, tf.float32) if a.dtype.name in COMPACT_TF else part

        return tf.nest.map_structure(pick, data)

    # A few batches ahead are enough to keep the model busy; an autotuned buffer can hold hundreds of MB of float32 batches.
    dataset = tf.data.Dataset.range(math.ceil(n / batch_size))
    dataset = dataset.map(gather, num_parallel_calls=PARALLEL_BATCHES if prefetch else None, deterministic=True)
    if prefetch:
        dataset = dataset.prefetch(PREFETCH_BATCHES)
    options = tf.data.Options()
    # Parallelism and buffer are fixed above, so autotuning has nothing to tune. Its model thread stalled each epoch's
    # end: a one-thread sweep job sat idle 150-250 ms per epoch until a timer woke that thread (benchmarks/CHANGES.md).
    options.autotune.enabled = False
    if any(in_place for _, in_place in holders):
        # tf.data's default graph rewrites serialize the pipeline, and with it a captured tensor: a copy of the array.
        # None of them changes this pipeline (its map is already parallel and prefetched; nothing to fuse).
        options.experimental_optimization.apply_default_optimizations = False
    if threads:
        options.threading.private_threadpool_size = threads
        options.threading.max_intra_op_parallelism = 1
    return dataset.with_options(options)


def steps(x: Any, batch_size: int) -> int:
    """Batches per epoch."""
    return math.ceil(num_samples(x) / batch_size)


def steps_per_execution(requested: int, steps_per_epoch: int, callbacks: list[Any] = (), *, epoch_ends: bool = True) -> int:  # type: ignore[assignment]
    """How many batches to run per call into TensorFlow.

    `requested`, capped at the epoch's length, when the data ends with each epoch (arrays: a call
    stops there); for an endless stream (image folders), the largest divisor of `steps_per_epoch` not
    above `requested`, so one call never spans two epochs. 1 if a callback of the user's own (not
    Keras') acts on single batches, so it still sees each one.
    """
    if any(batch_hooks(c) and not type(c).__module__.startswith("keras.") for c in callbacks):
        return 1
    if epoch_ends:
        return max(1, min(requested, steps_per_epoch))
    return max(d for d in range(1, min(requested, steps_per_epoch) + 1) if steps_per_epoch % d == 0)


def batch_hooks(callback: Any) -> bool:
    """Whether a Keras callback overrides any per-batch training hook."""
    import keras

    base = keras.callbacks.Callback
    return any(
        getattr(type(callback), h) is not getattr(base, h)
        for h in ("on_train_batch_begin", "on_train_batch_end", "on_batch_end", "on_batch_begin")
    )
