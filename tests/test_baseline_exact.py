"""The random baseline is exact (the expectation over every permutation of the test labels), and every
classification head gets one: sequential models, a graph with one softmax output, each head of a multi-output graph."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from expkit.config import validate_config
from expkit.training.baseline import label_pairs, random_baseline


def compiled(width: int, loss: str, metrics: list[Any]) -> keras.Model:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(width, activation="softmax" if width > 1 else "sigmoid")])
    model.compile(optimizer="sgd", loss=loss, metrics=metrics)
    return model


def over_all_permutations(labels: np.ndarray, score: Any) -> float:
    """The books' shuffled-labels score, averaged over every one of the n! orders (the value a baseline estimates)."""
    values = [score(labels, labels[list(order)]) for order in itertools.permutations(range(len(labels)))]
    return float(np.mean(values))


def test_accuracy_baseline_is_the_mean_over_every_permutation() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2, 0])  # 7! = 5040 orders
    brute = over_all_permutations(labels, lambda y, guess: float(np.mean(y == guess)))
    frequencies = np.bincount(labels) / len(labels)
    assert brute == pytest.approx(float((frequencies**2).sum()), abs=1e-12)  # the sum of squared class frequencies
    for width, loss, encode in (
        (3, "sparse_categorical_crossentropy", lambda y: y),
        (3, "categorical_crossentropy", lambda y: np.eye(3, dtype=np.uint8)[y]),
    ):
        baseline = random_baseline(compiled(width, loss, ["accuracy"]), encode(labels))
        assert baseline == {"baseline_accuracy": pytest.approx(brute, abs=1e-6)}


def test_precision_recall_and_auc_baselines_are_exact_too() -> None:
    labels = np.array([1, 0, 0, 1, 0, 0, 0], dtype=np.float32)
    metrics = ["accuracy", keras.metrics.Precision(name="precision"), keras.metrics.Recall(name="recall"), keras.metrics.AUC(name="auc")]
    baseline = random_baseline(compiled(1, "binary_crossentropy", metrics), labels)

    def precision(y: np.ndarray, guess: np.ndarray) -> float:
        return float(((y == 1) & (guess == 1)).sum() / (guess == 1).sum())

    def recall(y: np.ndarray, guess: np.ndarray) -> float:
        return float(((y == 1) & (guess == 1)).sum() / (y == 1).sum())

    assert baseline["baseline_precision"] == pytest.approx(over_all_permutations(labels, precision), abs=1e-6)
    assert baseline["baseline_recall"] == pytest.approx(over_all_permutations(labels, recall), abs=1e-6)
    assert baseline["baseline_accuracy"] == pytest.approx(over_all_permutations(labels, lambda y, g: float(np.mean(y == g))), abs=1e-6)
    assert baseline["baseline_auc"] == pytest.approx(0.5, abs=1e-6)  # guessing carries no information


def test_baseline_has_no_sampling_noise() -> None:
    """Ten shuffles gave +-0.003 between seeds; the exact value is the same on every call and matches to float32."""
    labels = np.random.default_rng(3).choice(46, size=2246, p=np.random.default_rng(4).dirichlet(np.ones(46)))
    model = compiled(46, "sparse_categorical_crossentropy", ["accuracy"])
    first, second = random_baseline(model, labels), random_baseline(model, labels)
    assert first == second
    expected = float(((np.bincount(labels, minlength=46) / len(labels)) ** 2).sum())
    assert first["baseline_accuracy"] == pytest.approx(expected, abs=1e-6)
    true, guess, weight = label_pairs(labels, 46)  # type: ignore[misc]
    assert weight.sum() == pytest.approx(len(labels)) and guess.shape == (len(true), 46)


def graph_config(tmp_path: Path, outputs: dict[str, Any], targets: dict[str, Any]) -> Any:
    root = str(tmp_path)
    return validate_config(
        {
            "name": "graph_baseline",
            "paths": {"root_dir": root, "log_dir": f"{root}/outputs", "output_dir": f"{root}/outputs/run"},
            "dataset": {
                "source": "random",
                "name": "random",
                "train_samples": 64,
                "test_samples": 60,
                "inputs": {"x": {"shape": [4]}},
                "targets": targets,
            },
            "model": {"inputs": {"x": {}}, "nodes": [{"name": "h", "in": "x", "type": "Dense", "units": 4}], "outputs": outputs},
            "optimizer": {"type": "Adam", "learning_rate": 1e-3},
            "trainer": {"epochs": 1, "batch_size": 16, "verbose": 0},
            "tracking": {"enabled": False, "experiment_name": "x", "artifact_dir": f"{root}/a"},
        }
    )


@pytest.mark.slow
def test_a_graph_with_one_softmax_output_gets_a_baseline(tmp_path: Path) -> None:
    from expkit.data import load_splits
    from expkit.training.runner import train_and_evaluate

    config = graph_config(
        tmp_path,
        {"label": {"in": "h", "type": "Dense", "units": 3, "activation": "softmax", "loss": "sparse_categorical_crossentropy",
                   "metrics": ["accuracy"]}},
        {"label": {"dtype": "int32", "high": 3}},
    )  # fmt: skip
    splits = load_splits(config.dataset, data_dir=None, seed=0)
    outcome = train_and_evaluate(config, splits, tmp_path / "out")
    y = np.asarray(splits.y_test["label"] if isinstance(splits.y_test, dict) else splits.y_test).reshape(-1).astype(int)
    expected = float(((np.bincount(y) / len(y)) ** 2).sum())
    (name,) = [k for k in outcome.test_metrics if k.startswith("baseline_")]
    assert name.endswith("accuracy") and name.replace("baseline_", "test_") in outcome.test_metrics
    assert outcome.test_metrics[name] == pytest.approx(expected, abs=1e-6)


def test_each_classification_head_of_a_multi_output_graph_gets_its_baseline(tmp_path: Path) -> None:
    from expkit.data import load_splits
    from expkit.training.runner import train_and_evaluate

    config = graph_config(
        tmp_path,
        {
            "topic": {"in": "h", "type": "Dense", "units": 4, "activation": "softmax", "loss": "sparse_categorical_crossentropy",
                      "metrics": ["accuracy"]},
            "flag": {"in": "h", "type": "Dense", "units": 1, "activation": "sigmoid", "loss": "binary_crossentropy",
                     "metrics": ["accuracy"]},
            "age": {"in": "h", "type": "Dense", "units": 1, "loss": "mse", "metrics": ["mae"]},
        },
        {"topic": {"dtype": "int32", "high": 4}, "flag": {"dtype": "int32", "high": 2}, "age": {"shape": [1]}},
    )  # fmt: skip
    splits = load_splits(config.dataset, data_dir=None, seed=0)
    outcome = train_and_evaluate(config, splits, tmp_path / "out")
    baselines = {k: v for k, v in outcome.test_metrics.items() if k.startswith("baseline_")}
    assert set(baselines) == {"baseline_topic_accuracy", "baseline_flag_accuracy"}  # the regression head has none
    assert {"test_topic_accuracy", "test_flag_accuracy"} <= set(outcome.test_metrics)
    for head, classes in (("topic", 4), ("flag", 2)):
        y = np.asarray(splits.y_test[head]).reshape(-1).astype(int)
        expected = float(((np.bincount(y, minlength=classes) / len(y)) ** 2).sum())
        assert baselines[f"baseline_{head}_accuracy"] == pytest.approx(expected, abs=1e-6)
