"""Preprocessing steps. Each is fitted on the training array only, then applied to every split."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from expkit.config.schema import Cast, Flatten, MultiHot, OneHot, PadSequences, PreprocessStep, Reshape, Scale, Standardize
from expkit.errors import ExpkitError

Transform = Callable[[np.ndarray], np.ndarray]
S = TypeVar("S", bound=PreprocessStep)
Fit = Callable[[Any, Any], Transform]

#: step options class (expkit.config.schema, @register_step) -> its fit(step, train): the transform for every split.
FITS: dict[type[PreprocessStep], Fit] = {}


def fits(cls: type[S]) -> Callable[[Callable[[S, Any], Transform]], Callable[[S, Any], Transform]]:
    """Register the fit of the step options class `cls`: `fit(step, train)` returns the transform for every split,
    with any statistics taken from the training array `train` only."""

    def add(fit: Callable[[S, Any], Transform]) -> Callable[[S, Any], Transform]:
        FITS[cls] = fit
        return fit

    return add


#: Sequences multi-hot encoded per block (bounds the temporary index arrays).
MULTI_HOT_BLOCK = 2048
#: Byte alignment TensorFlow needs to use a numpy array's memory in place (`expkit.training.feeding`).
ALIGNMENT = 64


def aligned_zeros(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """np.zeros whose data starts on an ALIGNMENT-byte boundary, so TensorFlow can read it without a copy."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if size == 0:  # nothing to align (and numpy may give an empty reshape its own pointer)
        return np.zeros(shape, dtype=dtype)
    raw = np.zeros(size + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start : start + size].view(dtype).reshape(shape)


def multi_hot(seqs: Sequence[Any], num_words: int) -> np.ndarray:
    """(n, num_words) uint8 matrix with a 1 at every word index present in each sequence.

    Filled a block of sequences at a time: the flat index arrays of a whole split (int64, several times the
    matrix's own size for IMDB) never exist at once.
    """
    out = aligned_zeros((len(seqs), num_words), np.uint8)
    for first in range(0, len(seqs), MULTI_HOT_BLOCK):
        block = seqs[first : first + MULTI_HOT_BLOCK]
        lengths = np.fromiter((len(s) for s in block), dtype=np.int64, count=len(block))
        if lengths.sum() == 0:
            continue
        flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in block])
        rows = np.repeat(np.arange(first, first + len(block)), lengths)
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
    fit = FITS.get(type(step))
    if fit is None:
        raise NotImplementedError(f"preprocessing op '{step.op}' has no fit: register one with @fits({type(step).__name__})")
    transform = fit(step, train)
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


# --- each op's fit ---------------------------------------------------------------------------------------------


@fits(Flatten)
def _flatten(step: Flatten, train: Any) -> Transform:
    return lambda a: a.reshape(len(a), -1)


@fits(Reshape)
def _reshape(step: Reshape, train: Any) -> Transform:
    return lambda a: a.reshape((len(a), *step.shape))


@fits(Scale)
def _scale(step: Scale, train: Any) -> Transform:
    divisor = np.float32(step.divisor)

    def scale(a: np.ndarray) -> np.ndarray:
        out = a.astype(np.float32)
        out /= divisor  # in place: one float32 copy of the data, not two (the same values)
        return out

    return scale


@fits(Standardize)
def _standardize(step: Standardize, train: Any) -> Transform:
    mean = train.astype(np.float64).mean(axis=0)
    std = train.astype(np.float64).std(axis=0)
    std[std == 0] = 1.0

    def transform(a: np.ndarray) -> np.ndarray:
        return ((a - mean) / std).astype(np.float32)

    transform.state = {"mean": mean, "std": std}  # type: ignore[attr-defined]  # carried by the inference model
    return transform


@fits(MultiHot)
def _multi_hot(step: MultiHot, train: Any) -> Transform:
    def transform(a: Any) -> np.ndarray:
        return multi_hot(a, step.num_words)

    return transform


@fits(OneHot)
def _one_hot(step: OneHot, train: Any) -> Transform:
    return lambda a: one_hot(a, step.num_classes)


@fits(PadSequences)
def _pad_sequences(step: PadSequences, train: Any) -> Transform:
    def transform(a: Any) -> np.ndarray:
        return pad_sequences(a, step.maxlen, step.padding, step.truncating)

    return transform


@fits(Cast)
def _cast(step: Cast, train: Any) -> Transform:
    return lambda a: a.astype(step.dtype)
