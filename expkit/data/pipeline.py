"""Load a dataset from config: raw arrays -> checks -> validation split -> preprocessing."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from expkit.data.catalog import Source, dataset_origin, get_source, source_options
from expkit.data.preprocess import apply_steps
from expkit.data.splits import Array, DataSplits, Splits, arrays_of, fingerprint, num_samples, take
from expkit.errors import ExpkitError, suggestion

__all__ = ["Array", "DataSplits", "Splits", "arrays_of", "fingerprint", "load_splits", "num_samples", "take"]


def check_arrays(name: str, x: Array, y: Array, *, raw_features: bool = False) -> None:
    """Reject data that would train on garbage: length mismatch, NaN or inf, no samples."""
    lengths = {len(a) for a in arrays_of(x)}
    if len(lengths) > 1:
        raise ExpkitError(f"{name}: the input arrays have different lengths {sorted(lengths)}", key="dataset")
    if num_samples(x) != num_samples(y) or len({len(a) for a in arrays_of(y)}) > 1:
        raise ExpkitError(
            f"{name}: {num_samples(x)} samples but {[len(a) for a in arrays_of(y)]} labels",
            key="dataset",
            hint="features and labels must have the same length",
        )
    if num_samples(x) == 0:
        raise ExpkitError(f"{name}: no samples", key="dataset")
    # Raw typed features keep NaN for missing values: the model imputes them.
    for what, a in ([] if raw_features else [("features", a) for a in arrays_of(x)]) + [("labels", a) for a in arrays_of(y)]:
        if a.dtype != object and np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
            bad = int((~np.isfinite(a)).sum())
            raise ExpkitError(
                f"{name} {what} contain {bad} NaN or inf value(s)", key="dataset", hint="clean the data or impute missing values first"
            )


def _load(source: Source, options: Any, dataset: Any, data_dir: str | None, seed: int) -> tuple[Any, ...]:
    """The source's raw splits: ((x_train, y_train), (x_test, y_test)[, (x_val, y_val)])."""
    if source.load is None:
        raise ExpkitError(f"the {dataset.source} source streams its data and loads no arrays", key="dataset.source")
    return tuple(source.load(options, path=dataset.path, data_dir=data_dir, seed=seed))


def _preprocess(
    pre: Any, kind: str, train: Array, others: list[Array], fitted: list[dict[str, Any]] | None = None
) -> tuple[Array, list[Array]]:
    """Fit each array's steps on its training part; a named array uses `preprocess.<name>` if given, else `preprocess.<kind>`.

    For a single array, each step's fitted statistics go to `fitted` (for the inference model).
    """
    if not isinstance(train, dict):
        return apply_steps(getattr(pre, kind), train, others, f"dataset.preprocess.{kind}", fitted)
    out_train, out_others = {}, [{} for _ in others]
    for name, array in train.items():
        own = name in (pre.model_extra or {})
        out_train[name], rest = apply_steps(
            pre.steps_for(kind, name), array, [o[name] for o in others], f"dataset.preprocess.{name if own else kind}"
        )
        for target, value in zip(out_others, rest, strict=True):
            target[name] = value
    return out_train, out_others  # type: ignore[return-value]


def _fit_source(
    named: Source, options: Any, dataset: Any, data_dir: str | None, x_train: Array, x_test: Array, x_val: Array | None
) -> tuple[Any, ...]:
    """A source's own fitted input preprocessing (text_dir: the vectorizer): fitted on x_train, applied to every split.

    Returns the new x_train, x_test, x_val, a few raw test inputs (the inference model's example), and what was fitted.
    """
    if dataset.preprocess.x:
        raise ExpkitError(
            f"the {dataset.source} source prepares its inputs itself; dataset.preprocess.x does not apply",
            key="dataset.preprocess.x",
            hint="remove it (text_dir: set dataset.vectorize instead)",
        )
    raw_example = take(x_test, slice(5))
    assert named.fit is not None
    x_train, (x_test, x_val), fitted = named.fit(options, x_train, [x_test, x_val], path=dataset.path, data_dir=data_dir)
    if isinstance(raw_example, dict) and len(raw_example) == 1:
        raw_example = next(iter(raw_example.values()))
    return x_train, x_test, x_val, raw_example, fitted


def load_splits(dataset: Any, *, data_dir: str | None, seed: int, fold: int | None = None) -> DataSplits:
    """Load `dataset` (the validated config node) through its registered source (expkit.data.named) into model-ready
    splits: arrays (`Splits`), or the source's stream (e.g. `ImageSplits` for image folders).

    With `fold` (0-based) and dataset.validation.folds = K, the validation data is the fold-th of K contiguous
    slices of the training data, and preprocessing is fitted on the other K-1 (as the books' k-fold loop does).
    """
    source = get_source(dataset.source)
    options = source_options(source, dataset)
    splits = _load_splits(source, options, dataset, data_dir=data_dir, seed=seed, fold=fold)
    splits.name = dataset.name or dataset.source
    splits.origin = dataset_origin(dataset, data_dir) if dataset.name else dataset.source
    release_freed_memory()  # the raw sequences and index arrays are garbage now
    return splits


def _load_splits(source: Source, options: Any, dataset: Any, *, data_dir: str | None, seed: int, fold: int | None = None) -> Any:
    """`load_splits` itself; the raw data it read is freed when it returns."""
    if source.stream is not None:  # data streamed from disk per pass (image folders, a table too large to load)
        stream = source.stream(options, path=dataset.path, data_dir=data_dir, seed=seed, validation=dataset.validation, fold=fold)
        if stream is not None:
            return stream
    loaded = _load(source, options, dataset, data_dir, seed)
    (x_train, y_train), (x_test, y_test) = loaded[0], loaded[1]
    source_val = loaded[2] if len(loaded) > 2 else None  # a source with its own validation split (image_dir's validation/)
    if dataset.max_train_samples:
        x_train, y_train = take(x_train, slice(dataset.max_train_samples)), take(y_train, slice(dataset.max_train_samples))
    if dataset.max_test_samples:
        x_test, y_test = take(x_test, slice(dataset.max_test_samples)), take(y_test, slice(dataset.max_test_samples))
    origin = source.origin(options, path=dataset.path, data_dir=data_dir, seed=seed) if source.origin else dataset.source
    typed = getattr(options, "feature_types", None)  # a table's columns
    feature_types = typed(list(x_train)) if typed is not None else None
    class_names: dict[str, list[str]] = {}
    if isinstance(y_train, dict) and any(a.dtype == object for a in y_train.values()):
        y_train, y_test, class_names = encode_labels(y_train, y_test)
    check_arrays(f"{origin}: training data", x_train, y_train, raw_features=feature_types is not None)
    check_arrays(f"{origin}: test data", x_test, y_test, raw_features=feature_types is not None)
    print_ = fingerprint(x_train, y_train, x_test, y_test)

    x_val = y_val = None
    holdout, split = dataset.validation.holdout, dataset.validation.split
    n_train = num_samples(x_train)
    folds = getattr(dataset.validation, "folds", None)
    if fold is not None and folds:
        size = n_train // folds
        if size < 1:
            raise ExpkitError(f"{folds} folds of {n_train} training samples leave an empty fold", key="dataset.validation.folds")
        start, stop = fold * size, (fold + 1) * size
        rest = np.r_[0:start, stop:n_train]
        x_val, y_val = take(x_train, slice(start, stop)), take(y_train, slice(start, stop))
        x_train, y_train = take(x_train, rest), take(y_train, rest)
    elif source_val is not None and holdout is None and split is None:
        x_val, y_val = source_val
        check_arrays(f"{origin}: validation data", x_val, y_val)
    elif holdout is not None:  # the first N (or fraction) of the training data, as the books do
        n = holdout if isinstance(holdout, int) else int(n_train * holdout)
        if not 0 < n < n_train:
            raise ExpkitError(f"holdout of {n} samples leaves no training data ({n_train} samples)", key="dataset.validation.holdout")
        x_val, y_val, x_train, y_train = (
            take(x_train, slice(n)),
            take(y_train, slice(n)),
            take(x_train, slice(n, None)),
            take(y_train, slice(n, None)),
        )
    elif split is not None:  # Keras' validation_split: the last fraction, taken before shuffling
        cut = math.ceil(n_train * (1 - split))
        if not 0 < cut < n_train:
            raise ExpkitError(f"validation split {split} leaves no training or no validation data", key="dataset.validation.split")
        x_val, y_val, x_train, y_train = (
            take(x_train, slice(cut, None)),
            take(y_train, slice(cut, None)),
            take(x_train, slice(cut)),
            take(y_train, slice(cut)),
        )

    pre = dataset.preprocess
    names = [k for a in (x_train, y_train) if isinstance(a, dict) for k in a]
    for key in pre.model_extra or {}:
        if key not in names:
            raise ExpkitError(
                f"no array named '{key}' to preprocess",
                key=f"dataset.preprocess.{key}",
                hint=suggestion(key, names, noun="arrays") if names else "this source has one x and one y array: use preprocess.x / .y",
            )
    # The inference model carries single-input preprocessing: a few raw test samples and each x step's fitted statistics.
    raw_example = None if isinstance(x_test, dict) else x_test[:5].copy()
    sizes = {
        "train": num_samples(x_train),
        **({"validation": num_samples(x_val)} if x_val is not None else {}),
        "test": num_samples(x_test),
    }
    source_fitted = None
    if source.fit is not None:  # input preprocessing of the source's own, fitted on the training part
        x_train, x_test, x_val, raw_example, source_fitted = _fit_source(source, options, dataset, data_dir, x_train, x_test, x_val)
    fitted: list[dict[str, Any]] = []
    x_train, rest_x = _preprocess(pre, "x", x_train, [x_test] + ([x_val] if x_val is not None else []), fitted)
    y_train, rest_y = _preprocess(pre, "y", y_train, [y_test] + ([y_val] if y_val is not None else []))
    splits = Splits(x_train, y_train, rest_x[0], rest_y[0], fingerprint=print_, raw_x_example=raw_example, x_fitted=fitted, sizes=sizes)
    splits.source_fitted = source_fitted
    if x_val is not None:
        splits.x_val, splits.y_val = rest_x[1], rest_y[1]
    splits.feature_types, splits.class_names = feature_types, class_names
    return splits


def release_freed_memory() -> None:
    """Hand the heap memory freed by loading (raw word-index lists, index arrays) back to the OS (glibc's malloc_trim).

    Freed, it stays in the process's heap and counts in its RSS: 130 MB after loading real-size IMDB.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        pass


def encode_labels(y_train: dict[str, np.ndarray], y_test: dict[str, np.ndarray]) -> tuple[Any, Any, dict[str, list[str]]]:
    """String labels -> int32 indices into the training split's sorted class names (whole numbers sort by value).

    A test label the training split never had is an error naming it.
    """
    names: dict[str, list[str]] = {}
    out_train, out_test = dict(y_train), dict(y_test)
    for key, labels in y_train.items():
        if labels.dtype != object:
            continue
        seen = sorted({str(v) for v in labels}, key=lambda v: (0, int(v), v) if v.lstrip("-").isdigit() else (1, 0, v))
        index = {name: i for i, name in enumerate(seen)}
        unknown = sorted({str(v) for v in y_test[key]} - set(index))
        if unknown:
            raise ExpkitError(
                f"the test data has class(es) {', '.join(map(repr, unknown[:5]))} of '{key}' that the training data lacks",
                key="dataset",
                hint="every class needs training rows (a stratified test_fraction split keeps them)",
            )
        names[key] = seen
        out_train[key] = np.fromiter((index[str(v)] for v in labels), dtype=np.int32, count=len(labels))
        out_test[key] = np.fromiter((index[str(v)] for v in y_test[key]), dtype=np.int32, count=len(y_test[key]))
    return out_train, out_test, names
