"""Sources whose arrays are named after the model's inputs and targets, each registered with its own options schema."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field

from expkit.config.schema import PositiveInt, Strict
from expkit.errors import ExpkitError

if TYPE_CHECKING:  # numpy is imported where arrays are made, so validation (which reads SOURCES) stays light
    import numpy as np

Named = dict[str, "np.ndarray"]
NamedArrays = tuple[tuple[Named, Named], tuple[Named, Named]]


@dataclass(frozen=True)
class Source:
    """A registered data source: the schema of its own `dataset.*` options and its loader.

    Two optional parts:
    - `check(options, *, path, data_dir, seed)`: the checks that need no training (files, folders, encodings), run
      before any MLflow run or run folder exists; raises ExpkitError.
    - `fit(options, x_train, others) -> (x_train, others, fitted)`: input preprocessing the source fits on the
      training part only (after the validation split; per fold under k-fold) and applies to every split (`others`:
      test, then validation or None). `fitted` travels on `Splits.source_fitted` to the raw-input inference model.
    """

    options: type[BaseModel]
    load: Callable[..., NamedArrays]
    # Optional: `check(options, *, path, data_dir, seed)` raises the errors found without loading the data (files,
    # columns), cheaply, so they are reported before any run is recorded (see `check_source`).
    check: Callable[..., None] | None = None
    # Optional: `fit(...)` fits what the source learns from the training split (text_dir: its vectorizer) for the model.
    fit: Callable[..., Any] | None = None
    # Optional: `stream(options, *, path, data_dir, seed, validation, fold)` returns streamed splits (read from disk
    # per pass) for data too large to load, or None to load arrays with `load`.
    stream: Callable[..., Any] | None = None


SOURCES: dict[str, Source] = {}


def register_source(
    name: str,
    options: type[BaseModel],
    *,
    check: Callable[..., None] | None = None,
    fit: Callable[..., Any] | None = None,
    stream: Callable[..., Any] | None = None,
) -> Callable[[Callable[..., NamedArrays]], Callable[..., NamedArrays]]:
    """Decorator: `load(options, *, path, data_dir, seed)` becomes the `dataset.source: name` source (see `Source`)."""

    def add(load: Callable[..., NamedArrays]) -> Callable[..., NamedArrays]:
        SOURCES[name] = Source(options, load, check, fit, stream)
        return load

    return add


def source_options(source: Source, dataset: Any) -> BaseModel:
    """The source's own options from the `dataset` config node: its extra keys, plus any shared dataset key
    (e.g. `test_fraction`) that the source's schema also declares."""
    shared = {k: getattr(dataset, k) for k in source.options.model_fields if k in type(dataset).model_fields}
    return source.options.model_validate({**shared, **(dataset.model_extra or {})})


def check_source(dataset: Any, *, data_dir: str | None, seed: int) -> None:
    """Run the source's checks that need no training (see `Source.check`), before anything is recorded."""
    source = SOURCES.get(dataset.source)
    if source is not None and source.check is not None:
        source.check(source_options(source, dataset), path=dataset.path, data_dir=data_dir, seed=seed)


def all_source_names() -> list[str]:
    """Every `dataset.source` value: the registered sources and the older ones (keras, sklearn, playground, image_dir)."""
    from expkit.data.sources import FOLDER_SOURCES
    from expkit.data.sources import SOURCES as OLDER

    return sorted({*SOURCES, *OLDER, *FOLDER_SOURCES})


# --- random: arrays of given shapes, as the book uses to demonstrate chapter 5 models -------------


class ArraySpec(Strict):
    """One generated array: per-sample shape ([] = one value), dtype, and values in [low, high) (integers: low..high-1)."""

    shape: list[PositiveInt] = Field(default_factory=list)
    dtype: Literal["uint8", "int32", "int64", "float32"] = "float32"
    low: float = 0.0
    high: float = 1.0


class RandomOptions(Strict):
    inputs: Annotated[dict[str, ArraySpec], Field(min_length=1)]
    targets: Annotated[dict[str, ArraySpec], Field(min_length=1)]
    train_samples: PositiveInt = 256
    test_samples: PositiveInt = 64


def random_array(spec: ArraySpec, n: int, rng: np.random.Generator) -> np.ndarray:
    import numpy as np

    shape = (n, *spec.shape)
    if spec.dtype == "float32":
        return rng.uniform(spec.low, spec.high, shape).astype(np.float32)
    return rng.integers(int(spec.low), int(spec.high), shape).astype(spec.dtype)


@register_source("random", RandomOptions)
def load_random(options: RandomOptions, *, seed: int, **_: Any) -> NamedArrays:
    """Random arrays for every input and target (smoke-test an architecture before its data exists)."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple[Named, Named]:
        return (
            {k: random_array(s, n, rng) for k, s in options.inputs.items()},
            {k: random_array(s, n, rng) for k, s in options.targets.items()},
        )

    return split(options.train_samples), split(options.test_samples)


# --- npz: the user's own file -------------------------------------------------------------


class NpzOptions(Strict):
    """Input/target name -> array name in the file; the file holds `<array>_train` and `<array>_test`."""

    inputs: Annotated[dict[str, str], Field(min_length=1)]
    targets: Annotated[dict[str, str], Field(min_length=1)]


@register_source("npz", NpzOptions)
def load_npz(options: NpzOptions, *, path: str | None, **_: Any) -> NamedArrays:
    """Named arrays from the npz at `dataset.path`."""
    from expkit.data.sources import read_npz

    if not path:
        raise ExpkitError("the npz source needs dataset.path: the .npz file", key="dataset.path")
    file = Path(path).expanduser()
    if not file.is_file():
        raise ExpkitError(f"dataset file {file} does not exist", key="dataset.path")
    wanted = {**options.inputs, **options.targets}
    keys = tuple(f"{a}_{split}" for a in wanted.values() for split in ("train", "test"))
    arrays = read_npz(file, keys)

    def split(which: str) -> tuple[Named, Named]:
        return (
            {k: arrays[f"{a}_{which}"] for k, a in options.inputs.items()},
            {k: arrays[f"{a}_{which}"] for k, a in options.targets.items()},
        )

    return split("train"), split("test")


# Sources in modules of their own register themselves on import.
from expkit.data import table, text_dir  # noqa: E402, F401
