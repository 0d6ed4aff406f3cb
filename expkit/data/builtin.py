"""The built-in sources with named datasets: `keras` (Keras-layout npz files or keras.datasets downloads), `sklearn`
(scikit-learn's bundled tables) and `playground` (the generated TensorFlow Playground problems).

Each is a registry entry (expkit.data.named) like any other source; their options are shared `dataset.*` keys
(`name`, `num_words`, `test_fraction`, `playground`). Imports nothing heavy: the loaders live in
expkit.data.sources and expkit.data.playground, imported when data is loaded or checked.
"""

from __future__ import annotations

import math
from typing import Any

from expkit.config.schema import Playground, PositiveInt, Strict
from expkit.data.named import register_source

#: Samples per split of the datasets Keras downloads (the download's content is fixed): (train, test).
KERAS_SIZES = {
    "mnist": (60000, 10000),
    "fashion_mnist": (60000, 10000),
    "cifar10": (50000, 10000),
    "imdb": (25000, 25000),
    "reuters": (8982, 2246),
    "boston_housing": (404, 102),
}
#: Rows of scikit-learn's bundled datasets (split by dataset.test_fraction as train_test_split does).
SKLEARN_ROWS = {"digits": 1797, "breast_cancer": 569, "diabetes": 442, "iris": 150, "wine": 178}
#: How a Keras-layout file's arrays give the split sizes: train/test arrays, or one array cut 80/20.
KERAS_FILE_ARRAYS = {"reuters": ("x",), "boston_housing": ("x",)}


def as_arrays(loaded: Any) -> tuple[Any, ...]:
    import numpy as np

    return tuple((np.asarray(x), np.asarray(y)) for x, y in loaded)


# --- keras -------------------------------------------------------------------------------------------


class KerasOptions(Strict):
    """Shared keys: the Keras dataset, and for imdb/reuters the vocabulary size."""

    name: str
    num_words: PositiveInt | None = None


def keras_loader(options: KerasOptions) -> Any:
    from expkit.data.sources import DATASETS

    return DATASETS["keras"].get(options.name, key="dataset.name")  # an unknown name fails with a suggestion


def load_keras(options: KerasOptions, *, path: str | None, data_dir: str | None, **_: Any) -> tuple[Any, ...]:
    return as_arrays(keras_loader(options)(path=path, data_dir=data_dir, num_words=options.num_words))


def keras_sizes(options: KerasOptions, *, path: str | None, data_dir: str | None, **_: Any) -> tuple[int, int] | None:
    from expkit.data.npz import npz_lengths
    from expkit.data.sources import find_local_file

    local = find_local_file(f"{options.name}.npz", path, data_dir)  # a missing dataset.path raises here
    if local is None:  # read from the Keras cache or downloaded: the published sizes
        return KERAS_SIZES.get(options.name)
    if options.name in KERAS_FILE_ARRAYS:
        n = npz_lengths(local, KERAS_FILE_ARRAYS[options.name])["x"]
        return int(n * 0.8), n - int(n * 0.8)
    lengths = npz_lengths(local, ("x_train", "x_test"))
    return lengths["x_train"], lengths["x_test"]


def keras_origin(options: KerasOptions, *, path: str | None, data_dir: str | None, **_: Any) -> str:
    from expkit.data.sources import find_local_file

    local = find_local_file(f"{options.name}.npz", path, data_dir)
    return str(local) if local else f"{options.name} from the Keras cache"


register_source(
    "keras",
    KerasOptions,
    check=lambda options, **_: keras_loader(options),
    sizes=keras_sizes,
    origin=keras_origin,
    named_arrays=False,
)(load_keras)


# --- sklearn -----------------------------------------------------------------------------------------


class SklearnOptions(Strict):
    """Shared keys: the bundled dataset, and the fraction held out as test data."""

    name: str
    test_fraction: float = 0.2


def sklearn_loader(options: SklearnOptions) -> Any:
    from expkit.data.sources import DATASETS

    return DATASETS["sklearn"].get(options.name, key="dataset.name")


def load_sklearn(options: SklearnOptions, *, seed: int, **_: Any) -> tuple[Any, ...]:
    return as_arrays(sklearn_loader(options)(test_fraction=options.test_fraction, seed=seed))


def sklearn_sizes(options: SklearnOptions, **_: Any) -> tuple[int, int] | None:
    rows = SKLEARN_ROWS.get(options.name)
    if rows is None:
        return None
    test = math.ceil(rows * options.test_fraction)  # as train_test_split cuts
    return rows - test, test


register_source(
    "sklearn",
    SklearnOptions,
    check=lambda options, **_: sklearn_loader(options),
    sizes=sklearn_sizes,
    origin=lambda options, **_: f"scikit-learn's bundled {options.name}",
    named_arrays=False,
)(load_sklearn)


# --- playground --------------------------------------------------------------------------------------


class PlaygroundOptions(Strict):
    """Shared keys: the problem (gauss, circle, xor, spiral) and its `dataset.playground` settings."""

    name: str
    playground: Playground | None = None


def playground_loader(options: PlaygroundOptions) -> Any:
    from expkit.data.playground import PROBLEMS

    return PROBLEMS.get(options.name, key="dataset.name")


def load_playground(options: PlaygroundOptions, *, seed: int, **_: Any) -> tuple[Any, ...]:
    return as_arrays(playground_loader(options)(seed=seed, playground=options.playground))


def playground_sizes(options: PlaygroundOptions, **_: Any) -> tuple[int, int]:
    settings = options.playground or Playground()
    cut = int(settings.num_samples * settings.train_fraction)
    return cut, settings.num_samples - cut


register_source(
    "playground",
    PlaygroundOptions,
    check=lambda options, **_: playground_loader(options),
    sizes=playground_sizes,
    origin=lambda options, **_: f"the generated Playground problem {options.name}",
    named_arrays=False,
)(load_playground)
