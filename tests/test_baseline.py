"""The random baseline (`baseline_<metric>`) and the ActivationLogger callback."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from expkit.data.pipeline import Splits
from expkit.data.sources import load_reuters
from expkit.training.activations import ActivationLogger
from expkit.training.baseline import random_baseline
from expkit.training.callbacks import CALLBACKS, attach_data
from tests.conftest import mlflow_runs, run_inprocess
from tests.datagen import write_reuters_npz


def squared_frequencies(labels: np.ndarray) -> float:
    """The chance that a shuffled label matches: the sum of squared class frequencies."""
    return float(((np.bincount(labels) / len(labels)) ** 2).sum())


def compiled(width: int, loss: str, metrics: list) -> keras.Model:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(width, activation="softmax" if width > 1 else "sigmoid")])
    model.compile(optimizer="sgd", loss=loss, metrics=metrics)
    return model


@pytest.mark.parametrize(
    ("width", "loss", "encode"),
    [
        (3, "categorical_crossentropy", lambda y: np.eye(3, dtype=np.uint8)[y]),  # one-hot, stored compact
        (3, "sparse_categorical_crossentropy", lambda y: y),
        (1, "binary_crossentropy", lambda y: (y > 0).astype(np.float32)),
    ],
)
def test_baseline_accuracy_is_the_sum_of_squared_class_frequencies(width: int, loss: str, encode) -> None:
    labels = np.random.default_rng(0).choice(3, size=3000, p=[0.6, 0.3, 0.1])
    expected = squared_frequencies(labels if width > 1 else (labels > 0).astype(int))
    model = compiled(width, loss, ["accuracy"])
    baseline = random_baseline(model, encode(labels))
    assert set(baseline) == {"baseline_accuracy"}
    # computed exactly (float32 metrics), not sampled
    assert baseline["baseline_accuracy"] == pytest.approx(expected, abs=1e-6)
    assert expected > 0.4  # far from 1/3 (uniform guessing), so the test tells the two apart


def test_baseline_covers_every_compiled_metric() -> None:
    labels = np.random.default_rng(1).integers(0, 2, 2000).astype(np.float32)
    baseline = random_baseline(compiled(1, "binary_crossentropy", ["accuracy", keras.metrics.AUC(name="auc")]), labels)
    assert set(baseline) == {"baseline_accuracy", "baseline_auc"}
    assert baseline["baseline_auc"] == pytest.approx(0.5, abs=1e-6)


@pytest.mark.slow
def test_reuters_layout_run_logs_baseline_and_activations(workdir: Path) -> None:
    data = workdir / "data"
    data.mkdir()
    write_reuters_npz(data / "reuters.npz", n=1200, vocab=12000)
    (_, _), (_, y_test) = load_reuters(data_dir=str(data), num_words=10000)
    done = run_inprocess(
        "train",
        "+experiment=reuters_dense",
        "callbacks=activations",
        "dataset.validation.holdout=200",
        "trainer.epochs=2",
        "trainer.batch_size=64",
        "trainer.verbose=0",
        "tracking.log_model=false",
        cwd=workdir,
        EXPKIT_DATA_DIR=str(data),
    )
    assert done.returncode == 0, done.stderr
    assert "baseline_accuracy: " in done.stdout
    (run,) = mlflow_runs(workdir, "reuters_dense")
    # exact: the sum of squared test-class frequencies (float32 metrics)
    assert run.data.metrics["baseline_accuracy"] == pytest.approx(squared_frequencies(y_test), abs=1e-6)
    assert "test_accuracy" in run.data.metrics

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    logged = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "activations")}
    assert {"activations.npz", "dense.png", "dense_1.png", "dense_2.png"} <= logged
    with np.load(client.download_artifacts(run.info.run_id, "activations/activations.npz", str(workdir))) as saved:
        assert sorted(saved.files) == [f"{layer}/epoch_{e:03d}" for layer in ("dense", "dense_1", "dense_2") for e in (0, 1)]
        assert saved["dense/epoch_000"].shape == (64,) and saved["dense_2/epoch_001"].shape == (46,)
        assert saved["dense_2/epoch_001"].sum() == pytest.approx(1.0, abs=1e-4)  # the softmax layer's output


def test_activation_logger_saves_each_layer_each_epoch_with_its_output_shape(tmp_path: Path) -> None:
    assert CALLBACKS.get("ActivationLogger", key="callbacks.x") is ActivationLogger
    rng = np.random.default_rng(0)
    x = rng.random((40, 6, 6, 1)).astype(np.float32)
    y = rng.integers(0, 2, 40).astype(np.float32)
    splits = Splits(x, y, x[:4], y[:4], x_val=x[:10], y_val=y[:10])
    model = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(2, 3, activation="relu", name="conv"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(1, activation="sigmoid", name="out"),
        ]
    )
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    logger = ActivationLogger(sample_index=3, png=True)
    attach_data([logger], splits, tmp_path)
    model.fit(x, y, epochs=3, batch_size=20, verbose=0, callbacks=[logger])
    with np.load(tmp_path / "activations" / "activations.npz") as saved:
        assert len(saved.files) == 3 * 3
        for layer in model.layers:
            for epoch in range(3):
                assert saved[f"{layer.name}/epoch_{epoch:03d}"].shape == tuple(layer.output.shape[1:])
        expected = keras.Model(model.inputs[0], model.get_layer("out").output)(x[3:4]).numpy()[0]
        assert np.allclose(saved["out/epoch_002"], expected, atol=1e-5)  # validation sample 3, final weights
    assert sorted(p.name for p in (tmp_path / "activations").glob("*.png")) == ["conv.png", "flat.png", "out.png"]


def test_activation_logger_rejects_a_sample_outside_the_data(tmp_path: Path) -> None:
    from expkit.errors import ExpkitError

    x = np.zeros((5, 2), np.float32)
    with pytest.raises(ExpkitError, match="sample_index 9 is outside the 5 training samples"):
        attach_data([ActivationLogger(sample_index=9)], Splits(x, x, x, x), tmp_path)
