"""The books' random baseline: how well a classifier would score by guessing, i.e. predicting the test labels shuffled.

Chollet's baseline (DLwP, Reuters) compares the test labels with a random permutation of themselves. This module
computes the expected value of each metric over all n! permutations exactly, not by sampling shuffles:

- Under a uniformly random permutation pi, sample i receives the label of sample pi(i), which is any of the n
  samples with equal chance (itself included). So the expected number of samples with true label a that are
  given label b is n_a * n_b / n, where n_a counts label a among the n test labels.
- A metric that averages a per-sample score (accuracy, crossentropy), or is a ratio of confusion counts whose
  margins a permutation leaves unchanged (precision, recall, F1 and ROC AUC on such hard guesses: the number of
  samples guessed as b is always n_b), is linear in those counts. Its expectation is therefore its value on every
  (true a, guessed b) pair weighted by n_a * n_b / n. Keras computes exactly that when given the pairs as sample weights.
- For accuracy this is the sum of squared class frequencies of the test labels, sum_a (n_a / n)^2: the chance that
  two test samples drawn independently (with replacement) share a label. Reuters' 46 topics: about 0.19.

Every classification head gets one: a sequential classifier's `baseline_<metric>`, and each classification output
of a graph model `baseline_<output>_<metric>` (named as its `test_*` metric is).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Heads with more distinct label values than this (multi-label targets, soft targets) get no baseline:
#: the exact computation needs one weighted pair per two label values.
MAX_LABEL_VALUES = 1000


def loss_name(loss: Any) -> str:
    """A configured loss's name: the string itself, a {type: ..., kwargs} mapping's type, or a serialized loss's class."""
    if isinstance(loss, str):
        return loss
    return str(loss.get("type") or loss.get("class_name") or "") if isinstance(loss, dict) else type(loss).__name__


def is_classification(loss: Any) -> bool:
    name = loss_name(loss).lower()
    return "crossentropy" in name or "hinge" in name


def label_pairs(y: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Every (true label, guessed label) pair a random permutation of `y` can produce, the guess shaped like the
    model's output (integer labels become one-hot rows when `width` > 1), and each pair's expected count
    n_a * n_b / n. None when `y` has more than MAX_LABEL_VALUES distinct values."""
    n = len(y)
    rows = y.reshape(n, -1)
    values, counts = np.unique(rows, axis=0, return_counts=True)
    if len(values) > MAX_LABEL_VALUES:
        return None
    a, b = (grid.reshape(-1) for grid in np.meshgrid(np.arange(len(values)), np.arange(len(values)), indexing="ij"))
    true = values[a].reshape(len(a), *y.shape[1:])
    guess = values[b]
    if width > 1 and guess.shape[-1] == 1:
        guess = np.eye(width, dtype=np.float32)[guess.reshape(-1).astype(int)]
    weight = counts[a].astype(np.float64) * counts[b] / n
    return true.astype(np.float32) if true.dtype in (np.uint8, np.bool_, np.int8) else true, guess.astype(np.float32), weight


def head_baseline(y: np.ndarray, width: int, metrics: list[Any]) -> dict[str, float]:
    """{metric name: its exact expected value} for guessing `y` shuffled, for the compiled `metrics` of one head."""
    import keras

    pairs = label_pairs(y, width) if len(y) else None
    resolved = []
    for spec in metrics:
        try:
            resolved.append(spec if isinstance(spec, str) else keras.metrics.get(spec))
        except (ValueError, TypeError):  # a metric of the user's own that Keras cannot rebuild from its config
            continue
    if pairs is None or not resolved:
        return {}
    true, guess, weight = pairs
    probe = keras.Sequential([keras.Input(guess.shape[1:]), keras.layers.Identity()])
    probe.compile(weighted_metrics=resolved)  # weighted: Keras applies sample weights to these only
    results = probe.compute_metrics(None, true, guess, sample_weight=weight.astype(np.float32))
    return {name: float(value) for name, value in results.items() if name != "loss"}


def random_baseline(model: Any, y_test: Any, test_names: set[str] | None = None) -> dict[str, float]:
    """`baseline_<metric>` for each compiled metric of each classification head: its exact expected value when the
    head's test labels are predicted in a uniformly random order (see the module docstring).

    `y_test`: the test labels (an array, or {output name: array} for a graph model). `test_names`: the model's test
    metric names (`test_label_accuracy`), so a head's baseline is named like its test metric.
    """
    compiled = model.get_compile_config() or {}
    losses, metrics = compiled.get("loss"), compiled.get("metrics") or []
    heads = losses if isinstance(losses, dict) else {"": losses}
    out: dict[str, float] = {}
    for head, loss in heads.items():
        if not is_classification(loss):
            continue
        y = y_test[head] if isinstance(y_test, dict) else y_test
        head_metrics = (metrics.get(head) or []) if isinstance(metrics, dict) else metrics
        output = model.get_layer(head).output if head else model.outputs[0]
        width = int(output.shape[-1] or 1)
        for name, value in head_baseline(np.asarray(y), width, list(head_metrics)).items():
            named = f"{head}_{name}" if head and (len(heads) > 1 or f"test_{head}_{name}" in (test_names or set())) else name
            out[f"baseline_{named}"] = value
    return out
