"""tf.data feeding and the trainer's speed settings: same batches, same results, in-process."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest

from expkit.training import feeding
from expkit.training.batches import ArrayBatches
from tests.conftest import REPO, expkit_env


def data(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, (n, 12)).astype(np.uint8)
    y = keras.utils.to_categorical(rng.integers(0, 3, n), 3).astype(np.uint8)
    return x, y


def epochs_of(dataset: object, orders: keras.callbacks.Callback, epochs: range) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Iterate the dataset once per epoch, as fit() does: the callback sets the epoch's order first."""
    out = []
    for epoch in epochs:
        orders.on_epoch_begin(epoch)
        out.append([(xb.numpy(), yb.numpy()) for xb, yb in dataset])  # type: ignore[attr-defined]
    return out


def test_shuffled_batches_follow_the_per_epoch_order_and_cast_compact_storage() -> None:
    x, y = data()
    dataset, orders = feeding.shuffled_epochs(x, y, 64, seed=5, order_offset=1)
    reference = ArrayBatches(x, y, 64, shuffle=True, seed=5, epoch=3)
    for batches in epochs_of(dataset, orders, range(2, 4)):  # Keras epochs 2 and 3: orders 3 and 4
        assert len(batches) == len(reference)
        for i, (xb, yb) in enumerate(batches):
            assert xb.dtype.name == yb.dtype.name == "float32"
            assert np.array_equal(xb, reference[i][0]) and np.array_equal(yb, reference[i][1])
        reference.on_epoch_end()


def test_each_pass_is_one_epoch_and_ends_with_it() -> None:
    """An endless stream was cut by fit() mid-prefetch: its iterator could then stall seconds on teardown."""
    x, y = data(130)
    dataset, orders = feeding.shuffled_epochs(x, y, 64, seed=5, order_offset=1)
    for epoch, batches in zip(range(4), epochs_of(dataset, orders, range(4)), strict=True):
        assert [len(xb) for xb, _ in batches] == [64, 64, 2]
        assert np.array_equal(np.concatenate([xb for xb, _ in batches]), x[feeding.epoch_order(5, epoch + 1, 130)].astype(np.float32))


def test_both_pipelines_run_with_fixed_parallelism_and_no_autotuning() -> None:
    """Autotuning's model thread held up each epoch's end; the pipelines' parallelism is fixed instead."""
    x, y = data(130)
    train, _ = feeding.shuffled_epochs(x, y, 64, seed=5, threads=1)
    for dataset in (train, feeding.batches(x, y, 64)):
        assert dataset.options().autotune.enabled is False  # type: ignore[attr-defined]
    assert train.options().threading.private_threadpool_size == 1  # type: ignore[attr-defined]


def test_unshuffled_batches_are_one_pass_in_order() -> None:
    x, _ = data(130)
    got = [b.numpy() for b in feeding.batches(x, None, 64)]
    assert [len(b) for b in got] == [64, 64, 2]
    assert np.array_equal(np.concatenate(got), x.astype(np.float32))


@pytest.mark.parametrize(("requested", "steps", "expected"), [(16, 469, 16), (16, 98, 16), (16, 59, 16), (1, 98, 1), (32, 8, 8)])
def test_steps_per_execution_when_the_data_ends_with_each_epoch(requested: int, steps: int, expected: int) -> None:
    assert feeding.steps_per_execution(requested, steps) == expected


@pytest.mark.parametrize(("requested", "steps", "expected"), [(16, 469, 7), (16, 98, 14), (16, 59, 1), (1, 98, 1), (32, 8, 8)])
def test_steps_per_execution_divides_an_endless_stream_s_epoch(requested: int, steps: int, expected: int) -> None:
    assert feeding.steps_per_execution(requested, steps, epoch_ends=False) == expected


def test_a_user_batch_callback_keeps_one_batch_per_execution() -> None:
    class PerBatch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            pass

    assert feeding.steps_per_execution(16, 98, [keras.callbacks.TerminateOnNaN()]) == 16  # Keras' own: coarser is fine
    assert feeding.steps_per_execution(16, 98, [PerBatch()]) == 1


def fit(x: np.ndarray, y: np.ndarray, *, spe: int, tf_data: bool) -> tuple[dict, list]:
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"], steps_per_execution=spe)
    if tf_data:  # as the runner does: Keras epoch e trains on order e + 1, as with the PyDataset (advanced once before epoch 0)
        train, orders = feeding.shuffled_epochs(x, y, 32, seed=5, order_offset=1)
        history = model.fit(train, epochs=2, verbose=0, shuffle=False, callbacks=[orders])
        return history.history, model.evaluate(feeding.batches(x, y, 32), verbose=0)
    history = model.fit(ArrayBatches(x, y, 32, shuffle=True, seed=5), epochs=2, verbose=0, shuffle=False)
    return history.history, model.evaluate(ArrayBatches(x, y, 32), verbose=0)


def test_tf_data_and_steps_per_execution_give_the_same_numbers_as_the_pydataset() -> None:
    x, y = data(320)  # 10 batches an epoch: 4 steps per call do not divide it (the last call of an epoch runs fewer), 16 outrun it
    reference = fit(x, y, spe=1, tf_data=False)
    for spe in (4, 16):
        assert fit(x, y, spe=spe, tf_data=True) == reference, spe


@pytest.mark.slow
def test_importing_tensorflow_hides_only_the_onednn_notice_and_skips_kerass_extras() -> None:
    """Also: the import's long-lived objects are frozen, so later garbage collections do not walk them."""
    code = """
import gc, sys
from expkit.backend import import_tensorflow
tf = import_tensorflow()
import keras
print(tf.constant(2.0).numpy())
print(sorted(m for m in ("sklearn", "pandas", "matplotlib.pyplot") if m in sys.modules))
import matplotlib.pyplot, pandas, sklearn  # still importable once Keras is loaded
print(pandas.DataFrame({"a": [1]}).shape)
print(gc.get_freeze_count() > 100_000)
"""
    env = expkit_env(PYTHONPATH=str(REPO))
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:4] == ["2.0", "[]", "(1, 1)", "True"]
    assert "oneDNN" not in done.stderr and "InitializeLog" not in done.stderr
