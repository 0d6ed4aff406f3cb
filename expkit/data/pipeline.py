"""Load a dataset from config: raw arrays -> checks -> validation split -> preprocessing."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from expkit.data.images import ImageSplits, load_image_folders
from expkit.data.preprocess import apply_steps
from expkit.data.sources import data_origin, get_loader
from expkit.errors import ExpkitError


@dataclass
class Splits:
    """Model-ready arrays; x_val is None when the run has no validation data."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    fingerprint: str = ""


def fingerprint(*arrays: np.ndarray) -> str:
    """A short sha256 over the raw arrays, so runs on different data are told apart."""
    digest = hashlib.sha256()
    for a in arrays:
        if a.dtype == object:
            for item in a:
                item = np.asarray(item)
                digest.update(len(item).to_bytes(8, "little") if item.ndim else b"s")
                digest.update(item.tobytes())
        else:
            digest.update(np.ascontiguousarray(a).tobytes())
        digest.update(str(a.shape).encode())
    return digest.hexdigest()[:16]


def check_arrays(name: str, x: np.ndarray, y: np.ndarray) -> None:
    """Reject data that would train on garbage: length mismatch, NaN or inf, no samples."""
    if len(x) != len(y):
        raise ExpkitError(
            f"{name}: {len(x)} samples but {len(y)} labels", key="dataset", hint="features and labels must have the same length"
        )
    if len(x) == 0:
        raise ExpkitError(f"{name}: no samples", key="dataset")
    for what, a in (("features", x), ("labels", y)):
        if a.dtype != object and np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
            bad = int((~np.isfinite(a)).sum())
            raise ExpkitError(
                f"{name} {what} contain {bad} NaN or inf value(s)", key="dataset", hint="clean the data or impute missing values first"
            )


def load_splits(dataset: Any, *, data_dir: str | None, seed: int) -> Splits | ImageSplits:
    """Load `dataset` (the validated config node) into model-ready Splits (streamed ImageSplits for image folders)."""
    if dataset.source == "image_dir":
        if dataset.validation.holdout is not None or dataset.validation.split is not None:
            raise ExpkitError(
                "image_dir takes its validation data from the validation/ folder", key="dataset.validation", hint="remove the setting"
            )
        return load_image_folders(dataset, seed=seed)
    loader = get_loader(dataset.source, dataset.name)
    loaded = loader(
        path=dataset.path,
        data_dir=data_dir,
        num_words=dataset.num_words,
        test_fraction=dataset.test_fraction,
        seed=seed,
        image_size=dataset.image_size,
        color_mode=dataset.color_mode,
    )
    (x_train, y_train), (x_test, y_test) = loaded[0], loaded[1]
    x_train, y_train, x_test, y_test = (np.asarray(a) for a in (x_train, y_train, x_test, y_test))
    source_val = loaded[2] if len(loaded) > 2 else None  # a source with its own validation split (image_dir's validation/)
    if dataset.max_train_samples:
        x_train, y_train = x_train[: dataset.max_train_samples], y_train[: dataset.max_train_samples]
    if dataset.max_test_samples:
        x_test, y_test = x_test[: dataset.max_test_samples], y_test[: dataset.max_test_samples]
    origin = data_origin(dataset.source, dataset.name, dataset.path, data_dir)
    check_arrays(f"{origin}: training data", x_train, y_train)
    check_arrays(f"{origin}: test data", x_test, y_test)
    print_ = fingerprint(x_train, y_train, x_test, y_test)

    x_val = y_val = None
    holdout, split = dataset.validation.holdout, dataset.validation.split
    if source_val is not None and holdout is None and split is None:
        x_val, y_val = np.asarray(source_val[0]), np.asarray(source_val[1])
        check_arrays(f"{origin}: validation data", x_val, y_val)
    elif holdout is not None:  # the first N (or fraction) of the training data, as the books do
        n = holdout if isinstance(holdout, int) else int(len(x_train) * holdout)
        if not 0 < n < len(x_train):
            raise ExpkitError(f"holdout of {n} samples leaves no training data ({len(x_train)} samples)", key="dataset.validation.holdout")
        x_val, y_val, x_train, y_train = x_train[:n], y_train[:n], x_train[n:], y_train[n:]
    elif split is not None:  # Keras' validation_split: the last fraction, taken before shuffling
        cut = math.ceil(len(x_train) * (1 - split))
        if not 0 < cut < len(x_train):
            raise ExpkitError(f"validation split {split} leaves no training or no validation data", key="dataset.validation.split")
        x_val, y_val, x_train, y_train = x_train[cut:], y_train[cut:], x_train[:cut], y_train[:cut]

    pre = dataset.preprocess
    x_train, rest_x = apply_steps(pre.x, x_train, [x_test] + ([x_val] if x_val is not None else []), "dataset.preprocess.x")
    y_train, rest_y = apply_steps(pre.y, y_train, [y_test] + ([y_val] if y_val is not None else []), "dataset.preprocess.y")
    splits = Splits(x_train, y_train, rest_x[0], rest_y[0], fingerprint=print_)
    if x_val is not None:
        splits.x_val, splits.y_val = rest_x[1], rest_y[1]
    return splits
