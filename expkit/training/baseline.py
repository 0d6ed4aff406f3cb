"""The books' random baseline: how well a classifier would score by guessing, i.e. predicting the test labels shuffled."""

from __future__ import annotations

from typing import Any

import numpy as np

SHUFFLES = 10


def loss_name(loss: Any) -> str:
    """A configured loss's name: the string itself, or a {type: ..., kwargs} mapping's type."""
    return loss if isinstance(loss, str) else str(loss.get("type", ""))


def is_classification(loss: Any) -> bool:
    name = loss_name(loss).lower()
    return "crossentropy" in name or "hinge" in name


def shuffled_predictions(y: np.ndarray, output_width: int, rng: np.random.Generator) -> np.ndarray:
    """The labels in a random order, shaped like the model's output (integer labels become one-hot rows)."""
    guess = y[rng.permutation(len(y))]
    if output_width > 1 and (guess.ndim == 1 or guess.shape[-1] == 1):
        return np.eye(output_width, dtype=np.float32)[guess.reshape(-1).astype(int)]
    return guess.reshape(len(guess), -1).astype(np.float32)


def random_baseline(model: Any, y_test: np.ndarray, seed: int, shuffles: int = SHUFFLES) -> dict[str, float]:
    """`baseline_<metric>` for each compiled metric: its value for a label-shuffled prediction, averaged over `shuffles` orders.

    For accuracy this is the chance that two random test samples share a class: the sum of squared class frequencies
    (Reuters' 46 topics: about 0.19).
    """
    if len(model.outputs) != 1 or len(y_test) == 0:
        return {}
    rng = np.random.default_rng(seed)
    width = int(model.output_shape[-1])
    labels = y_test.astype(np.float32) if y_test.dtype in (np.uint8, np.bool_, np.int8) else y_test
    totals: dict[str, float] = {}
    for _ in range(shuffles):
        model.reset_metrics()
        results = model.compute_metrics(None, labels, shuffled_predictions(y_test, width, rng), sample_weight=None)
        for name, value in results.items():
            if name != "loss":
                totals[name] = totals.get(name, 0.0) + float(value) / shuffles
    model.reset_metrics()
    return {f"baseline_{name}": value for name, value in totals.items()}
