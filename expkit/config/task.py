"""The loss fits the output layer and the labels' encoding (sequential models and each output of a graph)."""

from __future__ import annotations

import re
from typing import Any

from expkit.config.problems import Problems
from expkit.config.schema import ExperimentConfig, OneHot

# Losses that need one output unit per class, and those that need a single unit (snake_case: see loss_key).
CATEGORICAL_LOSSES = {"categorical_crossentropy", "categorical_focal_crossentropy"}
SPARSE_LOSSES = {"sparse_categorical_crossentropy"}
BINARY_LOSSES = {"binary_crossentropy", "binary_focal_crossentropy"}


def loss_key(loss: Any) -> str:
    """A configured loss as Keras' snake_case function name: 'categorical_crossentropy' for that string, for
    'CategoricalCrossentropy' and for {type: CategoricalCrossentropy, ...}; '' for a `_target_` loss."""
    name = loss if isinstance(loss, str) else str(loss.get("type", "")) if isinstance(loss, dict) else ""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def named_source(config: ExperimentConfig) -> bool:
    """A source whose targets are arrays of the user's own shape (random, npz): their encoding shows in their shape,
    which the pre-flight reads (expkit.preflight.check_targets), not in the preprocessing steps."""
    from expkit.data.catalog import SOURCES

    source = SOURCES.get(config.dataset.source)
    return source is not None and source.named_arrays


def check_task(config: ExperimentConfig, problems: Problems) -> None:
    """The loss must fit the output layer and the label encoding."""
    one_hot = [step.num_classes for step in config.dataset.preprocess.y if isinstance(step, OneHot)]
    encoded = bool(one_hot) or not named_source(config)
    last = config.model.layers[-1]
    _check_loss_fit(problems, "model.loss", "model.layers", config.model.loss, last, one_hot, "dataset.preprocess.y", encoded)


def check_outputs(config: ExperimentConfig, problems: Problems) -> None:
    """Per output: the loss fits its layer and its labels' encoding."""
    for name, spec in (config.model.outputs or {}).items():
        if not isinstance(spec.get("loss"), str | dict):
            continue
        steps = config.dataset.preprocess.steps_for("y", name)
        one_hot = [step.num_classes for step in steps if step.op == "one_hot"]
        key = f"model.outputs.{name}"
        encoded = bool(one_hot) or not named_source(config)
        _check_loss_fit(problems, f"{key}.loss", f"{key}.units", spec["loss"], spec, one_hot, f"dataset.preprocess.{name}", encoded)


def _check_loss_fit(
    problems: Problems,
    key: str,
    units_key: str,
    loss: Any,
    last: dict[str, Any],
    one_hot_classes: list[int],
    labels_key: str,
    encoded: bool = True,
) -> None:
    """`encoded`: the steps say how labels are encoded (False: a named source's targets, checked by their shape)."""
    shown = loss if isinstance(loss, str) else str(loss.get("type", ""))
    loss = loss_key(loss)
    units = last.get("units") if last.get("type") == "Dense" else None
    activation = last.get("activation")
    one_hot = bool(one_hot_classes)
    if loss in CATEGORICAL_LOSSES | SPARSE_LOSSES and units == 1:
        problems.add(
            key,
            f"{shown} needs one output unit per class, but the last layer has 1 unit",
            "for two classes with a 1-unit sigmoid use binary_crossentropy",
        )
    if loss in BINARY_LOSSES and isinstance(units, int) and units > 1 and activation == "softmax":
        problems.add(
            key,
            f"binary_crossentropy on a {units}-way softmax",
            "use categorical_crossentropy (one-hot labels) or sparse_categorical_crossentropy (integer labels)",
        )
    if loss in SPARSE_LOSSES and one_hot:
        problems.add(
            key,
            f"{shown} expects integer labels, but {labels_key} one-hot encodes them",
            "use categorical_crossentropy, or drop the one_hot step",
        )
    if loss in CATEGORICAL_LOSSES and not one_hot and units != 1 and encoded:
        problems.add(
            key,
            f"{shown} expects one-hot labels, but {labels_key} has no one_hot step",
            "use sparse_categorical_crossentropy, or add {op: one_hot, num_classes: N}",
        )
    for classes in one_hot_classes:
        if isinstance(units, int) and units != classes:
            problems.add(units_key, f"the last layer has {units} units but labels are one-hot with {classes} classes", "make them match")
