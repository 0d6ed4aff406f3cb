"""Sources whose arrays are named after the model's inputs and targets, each registered with its own options schema."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field

from expkit.config.schema import PositiveInt, Strict
from expkit.errors import ExpkitError, suggestion

if TYPE_CHECKING:  # numpy is imported where arrays are made, so validation (which reads SOURCES) stays light
    import numpy as np

Named = dict[str, "np.ndarray"]
NamedArrays = tuple[tuple[Named, Named], tuple[Named, Named]]


@dataclass(frozen=True)
class Source:
    """A registered data source (`dataset.source: <name>`): the schema of its options and how it loads.

    Every hook takes the source's options (`source_options`: its own `dataset.*` keys plus the shared keys its schema
    declares) and the keywords `path`, `data_dir`, `seed`. Give `load` (arrays) or `stream` (data read per pass), or both:
    - `load(options, **kw) -> ((x_train, y_train), (x_test, y_test)[, (x_val, y_val)])`: raw arrays, one array each or
      dicts keyed by the model's input and target names; the pipeline checks, splits and preprocesses them.
    - `stream(options, **kw, validation, fold)`: splits read from disk per pass (`expkit.data.images.ImageSplits` or a
      subclass), or None to load arrays with `load`.
    Optional, all run by the pre-flight (`expkit.preflight`) before any MLflow run or run folder exists:
    - `check(options, **kw)`: the errors found without loading the data (names, files, folders, columns); raises ExpkitError.
    - `sizes(options, **kw) -> (train, test) | None`: samples per split, read cheaply (headers, published figures), so that
      the validation split, k-fold and max_*_samples are checked against them.
    - `target_shapes(options, **kw) -> {target: per-sample shape}`: for targets of the user's own shape (random, npz).
    And:
    - `fit(options, x_train, others, **kw) -> (x_train, others, fitted)`: input preprocessing the source fits on the
      training part only (after the validation split; per fold under k-fold) and applies to every split (`others`:
      test, then validation or None). `fitted` travels on `Splits.source_fitted` to the raw-input inference model; it
      may have `write(output_dir)` (files for people, e.g. classes.json) and `class_names`.
    - `origin(options, **kw) -> str`: where the data is read from, for messages and the logged dataset
      (default: the `dataset.path` file, else the source's name).
    - `named_arrays`: the arrays are keyed by input/target name (the validation reads targets' encoding from their
      shape); False for the sources giving one x and one y array with class-index labels.
    """

    options: type[BaseModel]
    load: Callable[..., Any] | None = None
    check: Callable[..., None] | None = None
    fit: Callable[..., Any] | None = None
    stream: Callable[..., Any] | None = None
    sizes: Callable[..., tuple[int, int] | None] | None = None
    target_shapes: Callable[..., dict[str, tuple[int, ...]]] | None = None
    origin: Callable[..., str] | None = None
    named_arrays: bool = True

    @property
    def own_keys(self) -> list[str]:
        """The option keys that are the source's own (not shared `dataset.*` keys)."""
        from expkit.config.schema import Dataset

        return [k for k in self.options.model_fields if k not in Dataset.model_fields]


#: The registry of data sources, by `dataset.source` name.
SOURCES: dict[str, Source] = {}


def register_source(name: str, options: type[BaseModel], **hooks: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: `load(options, *, path, data_dir, seed)` becomes the `dataset.source: name` source; `hooks` are the
    other `Source` fields (check, sizes, stream, fit, ...). A stream-only source calls `add_source` instead."""

    def add(load: Callable[..., Any]) -> Callable[..., Any]:
        add_source(name, Source(options, load, **hooks))
        return load

    return add


def add_source(name: str, source: Source) -> Source:
    if source.load is None and source.stream is None:
        raise ValueError(f"source {name} needs a load or a stream function")
    SOURCES[name] = source
    return source


def get_source(name: str) -> Source:
    """The registered source `name`; an unknown name is an error with a suggestion (exit 2)."""
    source = SOURCES.get(name)
    if source is None:
        raise ExpkitError(f"unknown dataset source '{name}'", key="dataset.source", hint=suggestion(name, SOURCES, noun="known"))
    return source


def source_options(source: Source, dataset: Any) -> BaseModel:
    """The source's own options from the `dataset` config node: its extra keys, plus any shared dataset key
    (e.g. `test_fraction`) that the source's schema also declares."""
    shared = {k: getattr(dataset, k) for k in source.options.model_fields if k in type(dataset).model_fields}
    return source.options.model_validate({**shared, **(dataset.model_extra or {})})


def check_source(dataset: Any, *, data_dir: str | None, seed: int) -> None:
    """Run the source's checks that need no training (see `Source.check`), before anything is recorded."""
    source = get_source(dataset.source)
    if source.check is not None:
        source.check(source_options(source, dataset), path=dataset.path, data_dir=data_dir, seed=seed)


PACKAGE_PREFIX = "pkg://"


def package_file(path: str) -> str:
    """pkg://package/inner/file -> the file's path in the installed package (unchanged otherwise, or if not installed)."""
    if not path.startswith(PACKAGE_PREFIX):
        return path
    from importlib import resources
    from importlib.util import find_spec

    package, _, inner = path[len(PACKAGE_PREFIX) :].partition("/")
    if not package or find_spec(package) is None:
        return path
    return str(resources.files(package).joinpath(inner))


def dataset_origin(dataset: Any, data_dir: str | None) -> str:
    """Where the dataset is read from (`Source.origin`; default: the `dataset.path` file, pkg:// resolved, else the source's name)."""
    source = get_source(dataset.source)
    if source.origin is not None:
        return source.origin(source_options(source, dataset), path=dataset.path, data_dir=data_dir, seed=0)
    if dataset.path:
        return package_file(dataset.path)
    return str(dataset.source)


def all_source_names() -> list[str]:
    """Every `dataset.source` value (what `expkit list` shows)."""
    return sorted(SOURCES)


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


@register_source(
    "random",
    RandomOptions,
    sizes=lambda options, **_: (options.train_samples, options.test_samples),
    target_shapes=lambda options, **_: {name: tuple(spec.shape) for name, spec in options.targets.items()},
)
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


def npz_file(path: str | None, hint: str | None = None) -> Path:
    if not path:
        raise ExpkitError("the npz source needs dataset.path: the .npz file", key="dataset.path")
    file = Path(path).expanduser()
    if not file.is_file():
        raise ExpkitError(f"dataset file {file} does not exist", key="dataset.path", hint=hint)
    return file


def npz_sizes(options: NpzOptions, *, path: str | None, **_: Any) -> tuple[int, int]:
    """(train, test) samples, read from the file's array headers."""
    from expkit.data.npz import npz_lengths

    file = npz_file(path, "fix the path to your .npz file")
    first = next(iter(options.inputs.values()))
    names = {**options.inputs, **options.targets}.values()
    lengths = npz_lengths(file, tuple(f"{a}_{s}" for a in names for s in ("train", "test")))
    return lengths[f"{first}_train"], lengths[f"{first}_test"]


def npz_target_shapes(options: NpzOptions, *, path: str | None, **_: Any) -> dict[str, tuple[int, ...]]:
    from expkit.data.npz import npz_shapes

    shapes = npz_shapes(npz_file(path), tuple(f"{a}_train" for a in options.targets.values()))
    return {name: shapes[f"{a}_train"][1:] for name, a in options.targets.items()}


@register_source(
    "npz",
    NpzOptions,
    check=lambda options, *, path, **_: npz_file(path, "fix the path to your .npz file"),
    sizes=npz_sizes,
    target_shapes=npz_target_shapes,
)
def load_npz(options: NpzOptions, *, path: str | None, **_: Any) -> NamedArrays:
    """Named arrays from the npz at `dataset.path`."""
    from expkit.data.npz import read_npz

    file = npz_file(path)
    wanted = {**options.inputs, **options.targets}
    keys = tuple(f"{a}_{split}" for a in wanted.values() for split in ("train", "test"))
    arrays = read_npz(file, keys)

    def split(which: str) -> tuple[Named, Named]:
        return (
            {k: arrays[f"{a}_{which}"] for k, a in options.inputs.items()},
            {k: arrays[f"{a}_{which}"] for k, a in options.targets.items()},
        )

    return split("train"), split("test")


def discover_sources(paths: list[str] | None = None) -> list[str]:
    """Import every `expkit/data/source_*.py` module (or those in `paths`): a new source is that one file, registering
    itself on import, so it appears in validation, the pre-flight, `expkit list` and `load_splits` with no other edit.
    Returns the modules imported."""
    import importlib
    import pkgutil

    from expkit import data

    found = [m.name for m in pkgutil.iter_modules(paths or list(data.__path__)) if m.name.startswith("source_")]
    for name in found:
        importlib.import_module(f"expkit.data.{name}")
    return found
