"""Pre-flight: every check that needs no training, done before an MLflow run or a run folder exists.

`preflight(config)` checks the data a validated config points at through its registered source (expkit.data.named):
the source is known, its own `check` passes (dataset name, files, folders, columns), and the split sizes fit the data
(the source's `sizes`: read from npz headers or published figures, never by loading the data). The CLI calls
`expkit.launch_check.check_command` before Hydra starts, so a single
run, and a sweep whose every point has the same error, stop with exit 2 before anything is recorded. Each job
calls `preflight` too, right after validation, before its run starts: an error that depends on a sweep's values
fails only that job.

Imports no TensorFlow or MLflow.
"""

from __future__ import annotations

import math

from expkit.config.schema import ExperimentConfig
from expkit.errors import ExpkitError


def dataset_sizes(config: ExperimentConfig) -> tuple[int, int] | None:
    """(training, test) samples the source gives before max_*_samples (its `sizes`), or None when unknown without loading."""
    from expkit.data.catalog import get_source, source_options

    dataset = config.dataset
    source = get_source(dataset.source)
    if source.sizes is None:
        return None
    options = source_options(source, dataset)
    return source.sizes(options, path=dataset.path, data_dir=config.paths.data_dir, seed=config.seed)


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
    """Each target's per-sample shape, for sources whose targets have the user's own shape (the source's `target_shapes`,
    e.g. random: from its options; npz: from the file's headers); {} for sources whose labels are class indices."""
    from expkit.data.catalog import get_source, source_options

    dataset = config.dataset
    source = get_source(dataset.source)
    if source.target_shapes is None:
        return {}
    return source.target_shapes(source_options(source, dataset), path=dataset.path, data_dir=config.paths.data_dir, seed=config.seed)


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
    """Raise ExpkitError for anything about the data that would fail the run before training: the source's own checks
    (its dataset name, files, folders, columns), split sizes, and the loss against the targets' shapes. Cheap: no data
    is loaded, no TensorFlow imported. Returns `config`."""
    from expkit.data.catalog import check_source

    check_source(config.dataset, data_dir=config.paths.data_dir, seed=config.seed)  # an unknown source fails with a suggestion
    sizes = dataset_sizes(config)
    if sizes is not None:
        check_split_sizes(config, *sizes)
    check_targets(config)
    return config
