"""Pre-flight: every check that needs no training, done before an MLflow run or a run folder exists.

`preflight(config)` checks the data a validated config points at: the source and dataset name are known, the
files and folders exist, and the split sizes fit the data (read from npz headers or the source's own figures,
never by loading the data). The CLI calls `expkit.launch_check.check_command` before Hydra starts, so a single
run, and a sweep whose every point has the same error, stop with exit 2 before anything is recorded. Each job
calls `preflight` too, right after validation, before its run starts: an error that depends on a sweep's values
fails only that job.

Imports no TensorFlow or MLflow.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from expkit.config.schema import ExperimentConfig
from expkit.errors import ExpkitError, suggestion

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


def known_sources() -> dict[str, Any]:
    """Every `dataset.source` name: array sources (each with its registry of names), named sources, folder sources."""
    from expkit.data.named import SOURCES as NAMED
    from expkit.data.sources import FOLDER_SOURCES, SOURCES

    return {**SOURCES, **dict.fromkeys(NAMED), **dict.fromkeys(FOLDER_SOURCES)}


def npz_lengths(path: Path, arrays: tuple[str, ...]) -> dict[str, int]:
    """The first dimension of each array in an npz, read from the array headers only (nothing is loaded)."""
    return {name: shape[0] if shape else 0 for name, shape in npz_shapes(path, arrays).items()}


def npz_shapes(path: Path, arrays: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """The shape of each array in an npz, read from the array headers only (nothing is loaded)."""
    import numpy as np

    from expkit.data.sources import read_npz

    try:
        with zipfile.ZipFile(path) as archive:
            members = {n.removesuffix(".npy"): n for n in archive.namelist()}
            if any(a not in members for a in arrays):
                read_npz(path, arrays)  # raises the loader's own error, naming the missing arrays
            lengths: dict[str, tuple[int, ...]] = {}
            for name in arrays:
                with archive.open(members[name]) as f:
                    version = np.lib.format.read_magic(f)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    lengths[name] = tuple(int(n) for n in read(f)[0])
            return lengths
    except ExpkitError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise ExpkitError(
            f"cannot read {path}: {exc.__class__.__name__}: {exc}",
            key="dataset.path",
            hint="the file is truncated, corrupt or not an npz; get it again",
        ) from None


#: How each source tells its (training, test) sizes without loading its data (None: unknown). A new source adds its own
#: entry with @sizes_of("name"); a source without one still gets its source, name and target checks.
SIZES: dict[str, Callable[[ExperimentConfig], tuple[int, int] | None]] = {}
#: Sources whose layout is checked instead of sized (folders of files).
LAYOUT_CHECKS: dict[str, Callable[[ExperimentConfig], None]] = {}


def sizes_of(source: str) -> Callable[[Callable[[ExperimentConfig], Any]], Callable[[ExperimentConfig], Any]]:
    def add(probe: Callable[[ExperimentConfig], Any]) -> Callable[[ExperimentConfig], Any]:
        SIZES[source] = probe
        return probe

    return add


@sizes_of("keras")
def _keras_sizes(config: ExperimentConfig) -> tuple[int, int] | None:
    from expkit.data.sources import find_local_file

    dataset = config.dataset
    local = find_local_file(f"{dataset.name}.npz", dataset.path, config.paths.data_dir)  # a missing dataset.path raises here
    if local is None:  # read from the Keras cache or downloaded: the published sizes
        return KERAS_SIZES.get(dataset.name)
    if dataset.name in KERAS_FILE_ARRAYS:
        n = npz_lengths(local, KERAS_FILE_ARRAYS[dataset.name])["x"]
        return int(n * 0.8), n - int(n * 0.8)
    lengths = npz_lengths(local, ("x_train", "x_test"))
    return lengths["x_train"], lengths["x_test"]


@sizes_of("sklearn")
def _sklearn_sizes(config: ExperimentConfig) -> tuple[int, int] | None:
    rows = SKLEARN_ROWS.get(config.dataset.name)
    if rows is None:
        return None
    test = math.ceil(rows * config.dataset.test_fraction)  # as train_test_split cuts
    return rows - test, test


@sizes_of("playground")
def _playground_sizes(config: ExperimentConfig) -> tuple[int, int]:
    from expkit.config.schema import Playground

    options = config.dataset.playground or Playground()
    cut = int(options.num_samples * options.train_fraction)
    return cut, options.num_samples - cut


@sizes_of("random")
def _random_sizes(config: ExperimentConfig) -> tuple[int, int]:
    from expkit.data.named import RandomOptions

    options = RandomOptions.model_validate(config.dataset.model_extra or {})
    return options.train_samples, options.test_samples


@sizes_of("npz")
def _npz_sizes(config: ExperimentConfig) -> tuple[int, int]:
    from expkit.data.named import NpzOptions

    dataset = config.dataset
    options = NpzOptions.model_validate(dataset.model_extra or {})
    if not dataset.path:
        raise ExpkitError("the npz source needs dataset.path: the .npz file", key="dataset.path")
    file = Path(dataset.path).expanduser()
    if not file.is_file():
        raise ExpkitError(f"dataset file {file} does not exist", key="dataset.path", hint="fix the path to your .npz file")
    first = next(iter(options.inputs.values()))
    names = {**options.inputs, **options.targets}.values()
    lengths = npz_lengths(file, tuple(f"{a}_{s}" for a in names for s in ("train", "test")))
    return lengths[f"{first}_train"], lengths[f"{first}_test"]


def _check_image_dir(config: ExperimentConfig) -> None:
    from expkit.data.images import check_image_folders

    v = config.dataset.validation
    if any(value is not None for value in (v.holdout, v.split, v.folds)):
        raise ExpkitError(
            "image_dir takes its validation data from the validation/ folder", key="dataset.validation", hint="remove the setting"
        )
    check_image_folders(config.dataset)


LAYOUT_CHECKS["image_dir"] = _check_image_dir


def dataset_sizes(config: ExperimentConfig) -> tuple[int, int] | None:
    """(training, test) samples the source gives before max_*_samples, or None when unknown without loading."""
    probe = SIZES.get(config.dataset.source)
    return probe(config) if probe else None


def check_split_sizes(config: ExperimentConfig, n_train: int, n_test: int) -> None:
    """The validation split, k-fold and max_*_samples must leave data in every split (as data.pipeline cuts them)."""
    d = config.dataset
    if d.max_train_samples:
        n_train = min(n_train, d.max_train_samples)
    if d.max_test_samples:
        n_test = min(n_test, d.max_test_samples)
    capped = f", with dataset.max_train_samples={d.max_train_samples}" if d.max_train_samples else ""
    if n_train < 1 or n_test < 1:
        raise ExpkitError(f"the dataset has {n_train} training and {n_test} test samples", key="dataset", hint="each split needs data")
    v = d.validation
    if v.holdout is not None:
        n = v.holdout if isinstance(v.holdout, int) else int(n_train * v.holdout)
        if not 0 < n < n_train:
            raise ExpkitError(
                f"holdout of {n} samples leaves no training data ({n_train} training samples{capped})",
                key="dataset.validation.holdout",
                hint=f"hold out fewer than {n_train} samples (or a fraction such as 0.2)"
                + (", or raise dataset.max_train_samples" if capped else ""),
            )
    if v.split is not None and not 0 < math.ceil(n_train * (1 - v.split)) < n_train:
        raise ExpkitError(
            f"validation split {v.split} leaves no training or no validation data ({n_train} training samples{capped})",
            key="dataset.validation.split",
        )
    if v.folds is not None and n_train // v.folds < 1:
        raise ExpkitError(
            f"{v.folds} folds of {n_train} training samples{capped} leave an empty fold",
            key="dataset.validation.folds",
            hint=f"use at most {n_train} folds",
        )


def target_shapes(config: ExperimentConfig) -> dict[str, tuple[int, ...]]:
    """Each target's per-sample shape, for sources whose targets have the user's own shape (random: from its options;
    npz: from the file's headers); {} for sources whose labels are class indices."""
    dataset = config.dataset
    if dataset.source not in ("random", "npz"):
        return {}
    from expkit.data.named import SOURCES as NAMED

    options: Any = NAMED[dataset.source].options.model_validate(dataset.model_extra or {})
    if dataset.source == "random":
        return {name: tuple(spec.shape) for name, spec in options.targets.items()}
    shapes = npz_shapes(Path(str(dataset.path)).expanduser(), tuple(f"{a}_train" for a in options.targets.values()))
    return {name: shapes[f"{a}_train"][1:] for name, a in options.targets.items()}


def check_targets(config: ExperimentConfig) -> None:
    """The loss must fit each target's shape: integer labels for sparse losses, one value per class (one-hot or soft
    targets, as the book's functional models use) for categorical ones, with as many output units."""
    from expkit.config.validate import CATEGORICAL_LOSSES, SPARSE_LOSSES, loss_key

    shapes = target_shapes(config)
    model = config.model
    if model.is_graph:
        heads = {n: (spec.get("loss"), spec, f"model.outputs.{n}") for n, spec in (model.outputs or {}).items()}
    elif len(shapes) == 1 and model.layers:
        heads = {next(iter(shapes)): (model.loss, model.layers[-1], "model")}
    else:
        return
    for name, (loss, last, key) in heads.items():
        steps = config.dataset.preprocess.steps_for("y", name)
        if name not in shapes or any(step.op == "one_hot" for step in steps) or not isinstance(loss, str | dict):
            continue
        shape, kind = shapes[name], loss_key(loss)
        width = shape[-1] if shape else 1
        units = last.get("units") if last.get("type") == "Dense" else None
        shown = loss if isinstance(loss, str) else loss.get("type")
        if kind in CATEGORICAL_LOSSES and width == 1 and units != 1:
            raise ExpkitError(
                f"{shown} expects one value per class (one-hot or soft targets), but target '{name}' holds one label per sample",
                key=f"{key}.loss",
                hint=f"use sparse_categorical_crossentropy, or add dataset.preprocess.{name}: [{{op: one_hot, num_classes: N}}]",
            )
        if kind in CATEGORICAL_LOSSES and isinstance(units, int) and units != width:
            raise ExpkitError(
                f"the output has {units} units but target '{name}' has {width} values per sample",
                key=f"{key}.units" if model.is_graph else "model.layers",
                hint="make them match",
            )
        if kind in SPARSE_LOSSES and width > 1:
            raise ExpkitError(
                f"{shown} expects integer labels, but target '{name}' has {width} values per sample (shape {list(shape)})",
                key=f"{key}.loss",
                hint="use categorical_crossentropy for one-hot or soft targets",
            )


def preflight(config: ExperimentConfig) -> ExperimentConfig:
    """Raise ExpkitError for anything about the data that would fail the run before training: the source and name,
    files and folders, split sizes. Cheap: no data is loaded, no TensorFlow imported. Returns `config`."""
    dataset = config.dataset
    sources = known_sources()
    if dataset.source not in sources:
        raise ExpkitError(
            f"unknown dataset source '{dataset.source}'", key="dataset.source", hint=suggestion(dataset.source, sources, noun="known")
        )
    registry = sources[dataset.source]
    if registry is not None:
        registry.get(dataset.name, key="dataset.name")  # an unknown name fails with a suggestion
    from expkit.data.named import check_source

    check_source(dataset, data_dir=config.paths.data_dir, seed=config.seed)  # a registered source's own checks (files, columns)
    if dataset.source in LAYOUT_CHECKS:
        LAYOUT_CHECKS[dataset.source](config)
        return config
    sizes = dataset_sizes(config)
    if sizes is not None:
        check_split_sizes(config, *sizes)
    check_targets(config)
    return config
