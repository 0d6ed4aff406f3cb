"""Feature extraction: run a frozen keras.applications base once over every split and cache its outputs.

The cache key covers the base, its weights (name, or a local file's size and mtime), the image
size, the rescaling, the Keras version and the data fingerprint; a second run with the same key
reads the features from disk and says so.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from expkit.data.images import ImageSplits
from expkit.data.pipeline import Splits
from expkit.errors import ExpkitError

BATCH = 32


def weights_id(weights: str | None) -> str:
    """A stable description of `weights`: imagenet/None as is, a local file by path, size and mtime."""
    if weights in (None, "imagenet"):
        return str(weights)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ExpkitError(f"weights file {path} does not exist", key="features.weights", hint="use imagenet, null or a local .h5 file")
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def cache_key(base: str, weights: str | None, splits: ImageSplits) -> str:
    import keras

    parts = [base, weights_id(weights), list(splits.input_shape), splits.divisor, keras.__version__, splits.fingerprint]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


def build_base(base: str, weights: str | None, input_shape: tuple[int, ...]) -> Any:
    """keras.applications.<base>(include_top=False) with the given weights, frozen."""
    import keras

    factory = getattr(keras.applications, base, None)
    if factory is None or not base[:1].isupper():
        names = [n for n in dir(keras.applications) if n[:1].isupper()]
        from expkit.errors import suggestion

        raise ExpkitError(f"unknown keras.applications base '{base}'", key="features.base", hint=suggestion(base, names, noun="known"))
    try:
        model = factory(include_top=False, weights=weights, input_shape=tuple(input_shape))
    except Exception as exc:  # download failures, shape limits (e.g. VGG16 needs >= 32x32)
        raise ExpkitError(
            f"cannot build {base}: {str(exc).splitlines()[0]}", key="features", hint="check features.weights and dataset.image_size"
        ) from None
    model.trainable = False
    return model


def extract_features(splits: ImageSplits, base: str, weights: str | None, cache_root: Path) -> Splits:
    """Array Splits of the base's outputs for every split (read from the cache when present)."""
    if not isinstance(splits, ImageSplits):
        raise ExpkitError("feature extraction needs an image folder (dataset.source: image_dir)", key="features")
    key = cache_key(base, weights, splits)
    folder = cache_root / f"{base}-{key}"
    names = ["train", "test"] + (["validation"] if splits.validation else [])
    files = {name: folder / f"{name}.npy" for name in names}
    if all(f.is_file() for f in files.values()):
        print(f"features: reusing cached {base} features from {folder}", file=sys.stderr)
    else:
        print(f"features: extracting {base} features once per split into {folder}", file=sys.stderr)
        model = build_base(base, weights, splits.input_shape)
        folder.mkdir(parents=True, exist_ok=True)
        for name, file in files.items():
            outputs = model.predict(splits.batches(name, BATCH, labels=False), verbose=0)
            tmp = file.with_name(f".{file.name}")
            with open(tmp, "wb") as f:
                np.save(f, outputs.astype(np.float32))
            tmp.replace(file)
        (folder / "key.json").write_text(json.dumps({"base": base, "weights": str(weights), "fingerprint": splits.fingerprint}) + "\n")
    arrays = {name: np.load(file) for name, file in files.items()}
    out = Splits(arrays["train"], splits.y_train, arrays["test"], splits.y_test, fingerprint=f"{splits.fingerprint}-{base}-{key}")
    out.name, out.origin = splits.name, splits.origin
    if splits.validation:
        out.x_val, out.y_val = arrays["validation"], splits.y_val
    return out
