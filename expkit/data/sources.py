"""Dataset sources. Each returns raw ((x_train, y_train), (x_test, y_test)) numpy arrays.

Keras datasets are read from a local Keras-layout npz when one is found, and otherwise
downloaded through `keras.datasets` (which caches under $KERAS_HOME/datasets).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from expkit.data.npz import check_lengths, compact_sequences, read_npz  # noqa: F401  (compact_sequences: re-exported)
from expkit.errors import ExpkitError
from expkit.registry import Registry

Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
Loader = Callable[..., Arrays]

#: The dataset names (`dataset.name`) of the keras and sklearn sources (registered in expkit.data.builtin).
DATASETS: dict[str, Registry] = {"keras": Registry("keras dataset"), "sklearn": Registry("scikit-learn dataset")}
KERAS_SPLIT_SEED = 113
TRAIN_TEST = (("x_train", "y_train"), ("x_test", "y_test"))  # the seed keras.datasets uses for its shuffles


def find_local_file(fname: str, explicit: str | None, data_dir: str | None) -> Path | None:
    """An explicit `dataset.path`, else `<paths.data_dir>/<fname>` if it exists."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ExpkitError(
                f"dataset file {path} does not exist",
                key="dataset.path",
                hint="fix the path, or remove dataset.path to use paths.data_dir / a download",
            )
        return path
    if data_dir:
        path = Path(data_dir).expanduser() / fname
        if path.is_file():
            return path
    return None


def keras_download(name: str, fname: str, data_dir: str | None, **kwargs: Any) -> Arrays:
    """Load through `keras.datasets.<name>.load_data`, which downloads once into the Keras cache."""
    import keras

    try:
        return getattr(keras.datasets, name).load_data(**kwargs)
    except Exception as exc:  # network errors come as several exception types
        looked = f"{Path(data_dir).expanduser() / fname} (paths.data_dir), then " if data_dir else ""
        raise ExpkitError(
            f"dataset '{name}' not found locally and the download failed ({exc.__class__.__name__})",
            key="dataset.name",
            hint=f"looked in {looked}the Keras cache; put a Keras-layout {fname} in a folder and set "
            f"EXPKIT_DATA_DIR=<folder> (or paths.data_dir=<folder>, or dataset.path=<file>)",
        ) from None


def keras_shuffle(n: int) -> np.ndarray:
    indices = np.arange(n)
    np.random.RandomState(KERAS_SPLIT_SEED).shuffle(indices)
    return indices


def encode_sequences(seqs: np.ndarray, num_words: int | None, start_char: int = 1, oov_char: int = 2, index_from: int = 3) -> np.ndarray:
    """Keras' word-index convention: prepend start_char, shift by index_from, map rare words to oov_char."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs]) + index_from if len(seqs) else np.zeros(0, np.int64)
    if num_words:
        flat[flat >= num_words] = oov_char
    starts = np.full(len(seqs), start_char, dtype=np.int64)
    out = np.empty(len(seqs), dtype=object)
    pieces = np.split(flat, np.cumsum(lengths)[:-1]) if len(seqs) else []
    for i, piece in enumerate(pieces):
        out[i] = np.concatenate([starts[i : i + 1], piece]).astype(np.int32)
    return out


# --- keras datasets ----------------------------------------------------------------------


def _image_dataset(name: str) -> Loader:
    fname = f"{name}.npz"

    def load(path: str | None = None, data_dir: str | None = None, **_: Any) -> Arrays:
        local = find_local_file(fname, path, data_dir)
        if local is None:
            return keras_download(name, fname, data_dir)
        a = read_npz(local, ("x_train", "y_train", "x_test", "y_test"))
        check_lengths(local, TRAIN_TEST, a)
        return (a["x_train"], a["y_train"]), (a["x_test"], a["y_test"])

    return load


for _name in ("mnist", "fashion_mnist", "cifar10"):
    DATASETS["keras"].register(_name)(_image_dataset(_name))


@DATASETS["keras"].register("imdb")
def load_imdb(path: str | None = None, data_dir: str | None = None, num_words: int | None = None, **_: Any) -> Arrays:
    """IMDB reviews, exactly as `keras.datasets.imdb.load_data(num_words=...)` returns them."""
    local = find_local_file("imdb.npz", path, data_dir)
    if local is None:
        return keras_download("imdb", "imdb.npz", data_dir, num_words=num_words)
    a = read_npz(local, ("x_train", "y_train", "x_test", "y_test"))
    check_lengths(local, TRAIN_TEST, a)
    rng = np.random.RandomState(KERAS_SPLIT_SEED)  # one generator for both shuffles, as Keras does
    train = np.arange(len(a["x_train"]))
    rng.shuffle(train)
    test = np.arange(len(a["x_test"]))
    rng.shuffle(test)
    x_train = encode_sequences(a["x_train"][train], num_words)
    x_test = encode_sequences(a["x_test"][test], num_words)
    return (x_train, a["y_train"][train]), (x_test, a["y_test"][test])


@DATASETS["keras"].register("reuters")
def load_reuters(path: str | None = None, data_dir: str | None = None, num_words: int | None = None, **_: Any) -> Arrays:
    """Reuters newswires, exactly as `keras.datasets.reuters.load_data(num_words=...)` returns them."""
    local = find_local_file("reuters.npz", path, data_dir)
    if local is None:
        return keras_download("reuters", "reuters.npz", data_dir, num_words=num_words)
    a = read_npz(local, ("x", "y"))
    check_lengths(local, (("x", "y"),), a)
    order = keras_shuffle(len(a["x"]))
    xs, ys = encode_sequences(a["x"][order], num_words), a["y"][order]
    cut = int(len(xs) * 0.8)
    return (xs[:cut], ys[:cut]), (xs[cut:], ys[cut:])


@DATASETS["keras"].register("boston_housing")
def load_boston_housing(path: str | None = None, data_dir: str | None = None, **_: Any) -> Arrays:
    """Boston housing with Keras' exact 404/102 split."""
    local = find_local_file("boston_housing.npz", path, data_dir)
    if local is None:
        return keras_download("boston_housing", "boston_housing.npz", data_dir)
    a = read_npz(local, ("x", "y"))
    check_lengths(local, (("x", "y"),), a)
    order = keras_shuffle(len(a["x"]))
    x, y = a["x"][order], a["y"][order]
    cut = int(len(x) * 0.8)
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


# --- scikit-learn's bundled datasets -----------------------------------------------------


def _sklearn_dataset(name: str) -> Loader:
    def load(test_fraction: float = 0.2, seed: int = 42, **_: Any) -> Arrays:
        from sklearn import datasets
        from sklearn.model_selection import train_test_split

        bunch = getattr(datasets, f"load_{name}")()
        x, y = bunch.data, bunch.target
        stratify = y if name != "diabetes" else None
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=stratify)
        return (x_train, y_train), (x_test, y_test)

    return load


for _name in ("digits", "breast_cancer", "diabetes", "iris", "wine"):
    DATASETS["sklearn"].register(_name)(_sklearn_dataset(_name))
