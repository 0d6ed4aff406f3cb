"""Preprocessing steps. Each is fitted on the training array only, then applied to every split."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from expkit.errors import ExpkitError

Transform = Callable[[np.ndarray], np.ndarray]


def multi_hot(seqs: Sequence[Any], num_words: int) -> np.ndarray:
    """(n, num_words) uint8 matrix with a 1 at every word index present in each sequence."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    out = np.zeros((len(seqs), num_words), dtype=np.uint8)
    if lengths.sum() == 0:
        return out
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs])
    rows = np.repeat(np.arange(len(seqs)), lengths)
    keep = (flat >= 0) & (flat < num_words)
    out[rows[keep], flat[keep]] = 1
    return out


def pad_sequences(seqs: Sequence[Any], maxlen: int, padding: str, truncating: str) -> np.ndarray:
    """Keras' pad_sequences, in numpy: (n, maxlen) int32, zeros as padding."""
    out = np.zeros((len(seqs), maxlen), dtype=np.int32)
    for i, s in enumerate(seqs):
        s = np.asarray(s, dtype=np.int32)[-maxlen:] if truncating == "pre" else np.asarray(s, dtype=np.int32)[:maxlen]
        if len(s):
            if padding == "post":
                out[i, : len(s)] = s
            else:
                out[i, -len(s) :] = s
    return out


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim > 1 and labels.shape[-1] == 1:
        labels = labels.reshape(-1)
    if labels.ndim != 1 or (not np.issubdtype(labels.dtype, np.integer) and not np.all(np.mod(labels, 1) == 0)):
        raise ExpkitError(f"one_hot needs integer class labels, got shape {labels.shape} dtype {labels.dtype}", key="dataset.preprocess.y")
    labels = labels.astype(np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ExpkitError(
            f"labels range over {labels.min()}..{labels.max()}, outside 0..{num_classes - 1}",
            key="dataset.preprocess.y.one_hot.num_classes",
            hint=f"set num_classes to at least {labels.max() + 1}",
        )
    out = np.zeros((len(labels), num_classes), dtype=np.uint8)
    out[np.arange(len(labels)), labels] = 1
    return out


def fit_step(step: Any, train: np.ndarray, fitted: list[dict[str, Any]] | None = None) -> Transform:
    """Return the transform for one config step (a registered PreprocessStep), with statistics taken from `train`.

    If `fitted` is given, the step's fitted statistics (a transform's `state`, {} for a step without any) are
    appended to it, so that an inference model can carry them.
    """
    transform = step.fit(train)
    if fitted is not None:
        fitted.append(dict(getattr(transform, "state", {})))
    return transform


def apply_steps(
    steps: Sequence[Any], train: np.ndarray, others: list[np.ndarray], key: str, fitted: list[dict[str, Any]] | None = None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Fit each step on `train` and apply it to `train` and every array in `others` (fitted statistics go to `fitted`)."""
    for i, step in enumerate(steps):
        try:
            transform = fit_step(step, train, fitted)
            train, others = transform(train), [transform(a) for a in others]
        except ExpkitError:
            raise
        except (ValueError, TypeError) as exc:
            raise ExpkitError(f"{step.op} failed on data of shape {getattr(train, 'shape', '?')}: {exc}", key=f"{key}.{i}") from None
    return train, others
