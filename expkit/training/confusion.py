"""Test confusion matrices counted inside `model.evaluate`'s own pass, so plotting them needs no second pass over test data."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import keras
import numpy as np
from keras import ops

from expkit.training.baseline import is_classification, loss_name


def classifier_heads(head_losses: dict[str, Any]) -> dict[str, Any]:
    """The classification heads among {output name: loss} (a sequential model's one head is named "")."""
    return {head: loss for head, loss in head_losses.items() if is_classification(loss)}


def _pick(value: Any, head: str, names: list[str]) -> Any:
    """One head's tensor from a model's labels or outputs (a tensor, or a dict/list by output)."""
    if isinstance(value, dict):
        return value[head] if head else next(iter(value.values()))
    if isinstance(value, list | tuple):
        return value[names.index(head)] if head else value[0]
    return value


def class_indices(y: Any, outputs: Any, threshold: float) -> tuple[Any, Any]:
    """(true class, predicted class) per prediction, flattened: argmax of a softmax, or `outputs > threshold` for one unit.

    Labels are class indices or one-hot rows; a per-timestep output counts each timestep.
    """
    flat = lambda t: ops.reshape(t, (-1,))  # noqa: E731
    if outputs.shape[-1] is not None and outputs.shape[-1] > 1:
        one_hot = len(y.shape) == len(outputs.shape) and y.shape[-1] != 1
        true = ops.argmax(y, axis=-1) if one_hot else y
        return ops.cast(flat(true), "int32"), ops.cast(flat(ops.argmax(outputs, axis=-1)), "int32")
    above = lambda t: ops.cast(ops.cast(flat(t), "float32") > threshold, "int32")  # noqa: E731  (integer labels too)
    return above(y), above(outputs)


def _width(model: Any, head: str) -> int:
    output = model.outputs[list(model.output_names).index(head)] if head else model.outputs[0]
    units = output.shape[-1]
    return int(units) if units and units > 1 else 2


@contextmanager
def confusion_tally(model: Any, heads: dict[str, Any]) -> Iterator[dict[str, np.ndarray]]:
    """Count {head: confusion matrix} (row = true class, column = predicted) in every `model.evaluate` inside the block.

    `heads` is {output name: loss}: a hinge loss's classes split at 0, others' at 0.5. The counts are
    filled in when the block ends. The model's `compute_metrics` is wrapped for the block only.
    """
    counts: dict[str, np.ndarray] = {}
    if not heads:
        yield counts
        return
    names = list(getattr(model, "output_names", []))  # a Sequential model has one unnamed output
    tallies = {
        head: keras.Variable(np.zeros((_width(model, head),) * 2, np.float32), trainable=False, name=f"confusion_{head or 'output'}")
        for head in heads
    }
    thresholds = {head: 0.0 if "hinge" in loss_name(loss).lower() else 0.5 for head, loss in heads.items()}
    original = model.compute_metrics

    def compute_metrics(x: Any, y: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        for head, tally in tallies.items():
            n = tally.shape[0]
            true, predicted = class_indices(_pick(y, head, names), _pick(y_pred, head, names), thresholds[head])
            # One-hot outer product rather than bincount: XLA-compilable (jit_compile), and a stray label counts nowhere.
            tally.assign_add(ops.matmul(ops.transpose(ops.one_hot(true, n)), ops.one_hot(predicted, n)))
        return original(x, y, y_pred, sample_weight=sample_weight)

    model.test_function = None  # fit's validation may have traced it without the tally
    model.compute_metrics = compute_metrics
    try:
        yield counts
        counts.update({head: np.rint(keras.ops.convert_to_numpy(tally)).astype(np.int64) for head, tally in tallies.items()})
    finally:
        del model.compute_metrics
        model.test_function = None
