"""Splits named after the model: a graph model's inputs and outputs key every array; a sequential model reads one."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from expkit.errors import ExpkitError, suggestion

if TYPE_CHECKING:
    from expkit.data.splits import Splits


def _named(a: Any, names: list[str], what: str) -> Any:
    """Arrays keyed by the model's input (what='inputs') or output names; one array maps to the one name."""
    if a is None:
        return None
    if not isinstance(a, dict):
        if len(names) != 1:
            raise ExpkitError(
                f"the dataset gives one array but the model has {len(names)} {what}: {', '.join(names)}",
                key=f"model.{what}",
                hint="use a source that names its arrays (dataset.source: npz or random)",
            )
        return {names[0]: a}
    for name in names:
        if name not in a:
            raise ExpkitError(
                f"the dataset has no array '{name}'",
                key=f"model.{what}.{name}",
                hint=suggestion(name, a, noun="its arrays"),
            )
    return {name: a[name] for name in names}


def _single(a: Any, what: str) -> Any:
    if not isinstance(a, dict):
        return a
    if len(a) != 1:
        raise ExpkitError(
            f"the dataset has {len(a)} {'inputs' if what.startswith('x') else 'targets'} ({', '.join(a)}) but `model.layers` has one",
            key="model",
            hint="describe the model as a graph with named inputs and outputs",
        )
    return next(iter(a.values()))


def name_splits(model: Any, splits: Splits) -> Splits:
    """For a graph model: every split's x and y as dicts keyed by the model's input and output names."""
    if splits.feature_types is not None:  # raw typed columns: the model's own preprocessing layers take every one
        names = list(model.outputs or {})
        y = {k: _single(getattr(splits, k), k) if not model.is_graph else _named(getattr(splits, k), names, "outputs") for k in YS}
        return replace(splits, **y)
    if not model.is_graph:  # a sequential model reads the one array of a named source
        one = {k: _single(getattr(splits, k), k) for k in ("x_train", "y_train", "x_test", "y_test", "x_val", "y_val")}
        return replace(splits, **one)
    inputs, outputs = list(model.inputs or {}), list(model.outputs or {})
    return replace(
        splits,
        **{f"x_{s}": _named(getattr(splits, f"x_{s}"), inputs, "inputs") for s in ("train", "test", "val")},
        **{f"y_{s}": _named(getattr(splits, f"y_{s}"), outputs, "outputs") for s in ("train", "test", "val")},
    )


YS = ("y_train", "y_test", "y_val")
