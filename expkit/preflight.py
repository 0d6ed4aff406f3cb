"""Pre-flight: every check that needs no training, done before an MLflow run or a run folder exists.

`preflight(config)` checks the data a validated config points at: the source and dataset name are known, the
files and folders exist, and the split sizes fit the data (read from npz headers or the source's own figures,
never by loading the data). The CLI calls `check_command` before Hydra starts, so a single run, and a sweep
whose every point has the same error, stop with exit 2 before anything is recorded. A sweep job calls
`preflight` too, before its run starts: an error that depends on the swept values fails only that job.

Imports no TensorFlow or MLflow.
"""

from __future__ import annotations

import itertools
import math
import zipfile
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
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ExpkitError(
            f"cannot read {path}: {exc.__class__.__name__}: {exc}",
            key="dataset.path",
            hint="the file is truncated, corrupt or not an npz; get it again",
        ) from None


def _keras_sizes(dataset: Any, data_dir: str | None) -> tuple[int, int] | None:
    from expkit.data.sources import find_local_file

    local = find_local_file(f"{dataset.name}.npz", dataset.path, data_dir)  # a missing dataset.path raises here
    if local is None:  # read from the Keras cache or downloaded: the published sizes
        return KERAS_SIZES.get(dataset.name)
    if dataset.name in KERAS_FILE_ARRAYS:
        n = npz_lengths(local, KERAS_FILE_ARRAYS[dataset.name])["x"]
        return int(n * 0.8), n - int(n * 0.8)
    lengths = npz_lengths(local, ("x_train", "x_test"))
    return lengths["x_train"], lengths["x_test"]


def _named_sizes(dataset: Any) -> tuple[int, int] | None:
    from expkit.data.named import SOURCES as NAMED

    options = NAMED[dataset.source].options.model_validate(dataset.model_extra or {})
    if dataset.source == "random":
        return options.train_samples, options.test_samples  # type: ignore[attr-defined]
    if dataset.source == "npz":
        if not dataset.path:
            raise ExpkitError("the npz source needs dataset.path: the .npz file", key="dataset.path")
        file = Path(dataset.path).expanduser()
        if not file.is_file():
            raise ExpkitError(f"dataset file {file} does not exist", key="dataset.path", hint="fix the path to your .npz file")
        first = next(iter(options.inputs.values()))  # type: ignore[attr-defined]
        names = {**options.inputs, **options.targets}.values()  # type: ignore[attr-defined]
        lengths = npz_lengths(file, tuple(f"{a}_{s}" for a in names for s in ("train", "test")))
        return lengths[f"{first}_train"], lengths[f"{first}_test"]
    return None


def _check_image_dir(dataset: Any) -> None:
    from expkit.data.images import check_image_folders

    if any(v is not None for v in (dataset.validation.holdout, dataset.validation.split, dataset.validation.folds)):
        raise ExpkitError(
            "image_dir takes its validation data from the validation/ folder", key="dataset.validation", hint="remove the setting"
        )
    check_image_folders(dataset)


def dataset_sizes(config: ExperimentConfig) -> tuple[int, int] | None:
    """(training, test) samples the source gives before max_*_samples, or None when unknown without loading."""
    dataset = config.dataset
    if dataset.source in ("keras",):
        return _keras_sizes(dataset, config.paths.data_dir)
    if dataset.source == "sklearn" and dataset.name in SKLEARN_ROWS:
        rows = SKLEARN_ROWS[dataset.name]
        return rows - math.ceil(rows * dataset.test_fraction), math.ceil(rows * dataset.test_fraction)
    if dataset.source == "playground":
        from expkit.config.schema import Playground

        options = dataset.playground or Playground()
        cut = int(options.num_samples * options.train_fraction)
        return cut, options.num_samples - cut
    from expkit.data.named import SOURCES as NAMED

    return _named_sizes(dataset) if dataset.source in NAMED else None


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
    if dataset.source == "image_dir":
        _check_image_dir(dataset)
        return config
    sizes = dataset_sizes(config)
    if sizes is not None:
        check_split_sizes(config, *sizes)
    check_targets(config)
    return config


# --- the command line: check before Hydra starts -----------------------------------------------------------------


#: Beyond this many points a sweep is checked one swept value at a time (plus its first and last points).
FULL_GRID = 64


def _stub_runtime(cfg: Any) -> Any:
    """A composed config with Hydra's run-time paths stubbed, so it validates outside a Hydra run."""
    from omegaconf import OmegaConf

    probe = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    OmegaConf.update(probe, "paths.output_dir", "<output_dir>", force_add=True)
    return probe


def check_config(cfg: Any, dirs: list[Path]) -> ExperimentConfig:
    """validate_config + preflight on a config composed outside Hydra (`dirs`: the --config-dir folders)."""
    from expkit.config.validate import validate_config

    return preflight(validate_config(_stub_runtime(cfg), dirs))


def _swept_values(override: Any) -> list[str]:
    """The values of one sweep override to check: each listed value, or an interval's two ends."""
    from hydra.core.override_parser.types import IntervalSweep

    value = override.value()
    if isinstance(value, IntervalSweep):
        return [str(value.start), str(value.end)]
    return list(override.sweep_string_iterator())


def sweep_points(fixed: list[str], swept: dict[str, list[str]]) -> list[list[str]]:
    """Override lists to check: every point of a small grid, else the first point, each value varied alone, the last point."""
    keys = list(swept)
    if math.prod(len(v) for v in swept.values()) <= FULL_GRID:
        combos = list(itertools.product(*swept.values()))
    else:
        first = [v[0] for v in swept.values()]
        combos = [tuple(first)]
        for i, key in enumerate(keys):
            combos += [(*first[:i], value, *first[i + 1 :]) for value in swept[key][1:]]
        combos.append(tuple(v[-1] for v in swept.values()))
    return [[*fixed, *(f"{k}={v}" for k, v in zip(keys, combo, strict=True))] for combo in combos]


def _sweep_space(overrides: list[str], dirs: list[Path]) -> tuple[list[str], dict[str, list[str]], Any]:
    """(fixed overrides, {swept key: values to check}, the launcher node) of a multirun: the command line's sweeps and
    hydra.sweeper.params."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from expkit.config.locate import conf_dir

    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides)
    hydra_choices = [o.input_line for o in parsed if o.key_or_group.startswith("hydra")]
    firsts = [o for o in overrides if not o.startswith("hydra")]
    from expkit.config.overrides import first_choice

    extra = [f"hydra.searchpath=[{','.join('file://' + str(d) for d in dirs)}]"] if dirs else []
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=extra + hydra_choices + [first_choice(o) for o in parser.parse_overrides(firsts)],
            return_hydra_config=True,
        )
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}
    lines = [f"{k}={v}" for k, v in params.items()] + [o.input_line for o in parsed if not o.key_or_group.startswith("hydra")]
    fixed: list[str] = []
    swept: dict[str, list[str]] = {}
    for override in parser.parse_overrides(lines):
        key = override.get_key_element()
        swept.pop(key, None)
        fixed = [f for f in fixed if not f.startswith(f"{key}=")]
        if override.is_sweep_override():
            swept[key] = _swept_values(override)
        else:
            fixed.append(override.input_line)
    return fixed, swept, OmegaConf.select(cfg, "hydra.launcher", default=None)


def check_command(args: list[str], cfg: Any) -> None:
    """Before Hydra starts: a single run's config must pass validation and pre-flight (`cfg`, composed by check_overrides).

    A sweep stops (exit 2) when every point checked fails: then the error does not depend on the swept values. When one
    point passes, the sweep runs, and a job whose own values are wrong fails alone, recorded in the sweep.
    """
    from expkit.config.overrides import _compose, split_args

    raw, dirs = split_args(args)
    if not any(a in ("-m", "--multirun") for a in args):
        check_config(cfg, dirs)
        return
    fixed, swept, launcher = _sweep_space(raw, dirs)
    from expkit.cluster import launcher_is_remote

    if launcher_is_remote(launcher):  # the data may exist only on the workers: each job checks it there, before its run
        return
    points = sweep_points(fixed, swept)
    first_error: ExpkitError | None = None
    for point in points:
        try:
            check_config(_compose(point, dirs), dirs)
            return  # at least one job can run
        except ExpkitError as error:
            first_error = first_error or error
        except Exception:  # a point that cannot be composed is that job's failure, reported by Hydra
            return
    raise ExpkitError(
        f"every job of this sweep would fail before training ({len(points)} point(s) checked), so none was started: {first_error}"
    )
