"""Load a dataset from config: raw arrays -> checks -> validation split -> preprocessing."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from expkit.data.images import ImageSplits, load_image_folders
from expkit.data.named import SOURCES as NAMED_SOURCES
from expkit.data.named import source_options
from expkit.data.preprocess import apply_steps
from expkit.data.sources import data_origin, get_loader
from expkit.errors import ExpkitError, suggestion

# One array, or arrays keyed by model input / output name (sources such as `random` and `npz`).
Array = np.ndarray | dict[str, np.ndarray]


@dataclass
class Splits:
    """Model-ready arrays (single, or keyed by input/output name); x_val is None when the run has no validation data."""

    x_train: Array
    y_train: Array
    x_test: Array
    y_test: Array
    x_val: Array | None = None
    y_val: Array | None = None
    fingerprint: str = ""
    # For the inference model: a few raw test samples (the dataset's own form) and each x step's fitted statistics.
    raw_x_example: np.ndarray | None = None
    x_fitted: list[dict[str, Any]] = field(default_factory=list)
    # Samples per split before preprocessing: {"train": n, "validation": n, "test": n}.
    sizes: dict[str, int] = field(default_factory=dict)
    # What the source fitted on the training split for the raw-input inference model (text_dir: a TextFitted).
    source_fitted: Any = None
    # Typed raw features ({input: feature spec}, expkit.config.features): x holds raw columns, and the model fits its
    # preprocessing layers on x_train (expkit.models.preprocessing). None: x is model-ready.
    feature_types: dict[str, Any] | None = None
    # {target: class names} for targets given as strings (encoded as indices into these names).
    class_names: dict[str, list[str]] = field(default_factory=dict)
    # The typed columns' training statistics (expkit.data.table_stats), set when the model's layers are fitted.
    statistics: dict[str, Any] | None = None


def arrays_of(a: Array) -> list[np.ndarray]:
    """The arrays in `a`, in name order."""
    return [a[k] for k in sorted(a)] if isinstance(a, dict) else [a]


def num_samples(a: Array) -> int:
    return len(arrays_of(a)[0])


def take(a: Array, rows: Any) -> Array:
    """`a[rows]` for one array or for every array of a named set."""
    return {k: v[rows] for k, v in a.items()} if isinstance(a, dict) else a[rows]


def fingerprint(*arrays: Array) -> str:
    """A short sha256 over the raw arrays, so runs on different data are told apart."""
    digest = hashlib.sha256()
    for a in (item for named in arrays for item in arrays_of(named)):
        if a.dtype == object:
            for item in a:
                item = np.asarray(item)
                digest.update(len(item).to_bytes(8, "little") if item.ndim else b"s")
                digest.update(item.tobytes())
        else:
            digest.update(np.ascontiguousarray(a).tobytes())
        digest.update(str(a.shape).encode())
    return digest.hexdigest()[:16]


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


def _load(dataset: Any, data_dir: str | None, seed: int) -> tuple[Any, ...]:
    """The source's raw splits: ((x_train, y_train), (x_test, y_test)[, (x_val, y_val)])."""
    named = NAMED_SOURCES.get(dataset.source)
    if named is not None:
        return named.load(source_options(named, dataset), path=dataset.path, data_dir=data_dir, seed=seed)
    loader = get_loader(dataset.source, dataset.name)
    loaded = loader(
        path=dataset.path,
        data_dir=data_dir,
        num_words=dataset.num_words,
        test_fraction=dataset.test_fraction,
        seed=seed,
        image_size=dataset.image_size,
        color_mode=dataset.color_mode,
        playground=dataset.playground,
    )
    return tuple((np.asarray(x), np.asarray(y)) for x, y in loaded)


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


def _fit_source(named: Any, dataset: Any, data_dir: str | None, x_train: Array, x_test: Array, x_val: Array | None) -> tuple[Any, ...]:
    """A source's own fitted input preprocessing (text_dir: the vectorizer): fitted on x_train, applied to every split.

    Returns the new x_train, x_test, x_val, a few raw test inputs (the inference model's example), and what was fitted.
    """
    if dataset.preprocess.x:
        raise ExpkitError(
            f"the {dataset.source} source prepares its inputs itself; dataset.preprocess.x does not apply",
            key="dataset.preprocess.x",
            hint="remove it (text_dir: set dataset.vectorize instead)",
        )
    options = source_options(named, dataset)
    raw_example = take(x_test, slice(5))
    x_train, (x_test, x_val), fitted = named.fit(options, x_train, [x_test, x_val], path=dataset.path, data_dir=data_dir)
    if isinstance(raw_example, dict) and len(raw_example) == 1:
        raw_example = next(iter(raw_example.values()))
    return x_train, x_test, x_val, raw_example, fitted


def load_splits(dataset: Any, *, data_dir: str | None, seed: int, fold: int | None = None) -> Splits | ImageSplits:
    """Load `dataset` (the validated config node) into model-ready Splits (streamed ImageSplits for image folders).

    With `fold` (0-based) and dataset.validation.folds = K, the validation data is the fold-th of K contiguous
    slices of the training data, and preprocessing is fitted on the other K-1 (as the books' k-fold loop does).
    """
    splits = _load_splits(dataset, data_dir=data_dir, seed=seed, fold=fold)
    release_freed_memory()  # the raw sequences and index arrays are garbage now
    return splits


def _load_splits(dataset: Any, *, data_dir: str | None, seed: int, fold: int | None = None) -> Splits | ImageSplits:
    """`load_splits` itself; the raw data it read is freed when it returns."""
    if dataset.source == "image_dir":
        if dataset.validation.holdout is not None or dataset.validation.split is not None or fold is not None:
            raise ExpkitError(
                "image_dir takes its validation data from the validation/ folder", key="dataset.validation", hint="remove the setting"
            )
        return load_image_folders(dataset, seed=seed)
    named = NAMED_SOURCES.get(dataset.source)
    if named is not None and named.stream is not None:  # a file too large to load: streamed from disk
        stream = named.stream(
            source_options(named, dataset), path=dataset.path, data_dir=data_dir, seed=seed, validation=dataset.validation, fold=fold
        )
        if stream is not None:
            return stream  # type: ignore[no-any-return]
    loaded = _load(dataset, data_dir, seed)
    (x_train, y_train), (x_test, y_test) = loaded[0], loaded[1]
    source_val = loaded[2] if len(loaded) > 2 else None  # a source with its own validation split (image_dir's validation/)
    if dataset.max_train_samples:
        x_train, y_train = take(x_train, slice(dataset.max_train_samples)), take(y_train, slice(dataset.max_train_samples))
    if dataset.max_test_samples:
        x_test, y_test = take(x_test, slice(dataset.max_test_samples)), take(y_test, slice(dataset.max_test_samples))
    origin = data_origin(dataset.source, dataset.name, dataset.path, data_dir) if dataset.source not in NAMED_SOURCES else dataset.source
    typed = getattr(source_options(named, dataset), "feature_types", None) if named is not None else None  # a table's columns
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
    named = NAMED_SOURCES.get(dataset.source)
    if named is not None and named.fit is not None:  # input preprocessing of the source's own, fitted on the training part
        x_train, x_test, x_val, raw_example, source_fitted = _fit_source(named, dataset, data_dir, x_train, x_test, x_val)
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
