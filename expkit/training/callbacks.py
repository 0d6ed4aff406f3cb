"""Keras callbacks from the `callbacks` config group, plus the ones every run gets."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from expkit.registry import Registry, build_component
from expkit.selection.objective import Objective, direction


def _keras_callbacks() -> list[Any]:
    """Keras' callbacks, then expkit's own (found by name after Keras'). Imported here, one way: they import nothing from this module."""
    import keras

    from expkit.training.activations import ActivationLogger

    return [keras.callbacks, SimpleNamespace(ActivationLogger=ActivationLogger)]


CALLBACKS = Registry("callback", _keras_callbacks)


def resolve_paths(spec: dict[str, Any], output_dir: Path) -> dict[str, Any]:
    """Relative file paths in callback kwargs are placed inside the run's output folder."""
    spec = dict(spec)
    for arg in ("filepath", "filename", "log_dir", "backup_dir"):
        if isinstance(spec.get(arg), str) and not Path(spec[arg]).is_absolute():
            spec[arg] = str(output_dir / spec[arg])
    return spec


def with_direction(spec: dict[str, Any], objective: Objective | None) -> dict[str, Any]:
    """A callback that monitors a metric (EarlyStopping, ReduceLROnPlateau, ...) gets the objective's direction unless given."""
    if "type" not in spec or "monitor" not in spec or spec.get("mode") not in (None, "auto"):
        return spec
    monitor = str(spec["monitor"])
    mode = objective.mode if objective is not None and monitor == objective.metric else direction(monitor)
    return {**spec, "mode": mode}


def make_callbacks(specs: dict[str, dict[str, Any]], output_dir: Path, objective: Objective | None = None) -> list[Any]:
    """Build each named callback from `{type: Name, **kwargs}` or `{_target_: ..., **kwargs}`."""
    return [
        build_component(with_direction(resolve_paths(spec, output_dir), objective), CALLBACKS, key=f"callbacks.{name}")
        for name, spec in specs.items()
    ]


def attach_data(callbacks: list[Any], splits: Any, output_dir: Path) -> None:
    """Hand the run's data and folder to callbacks that ask for them (a `use_run(splits, output_dir)` method), e.g. ActivationLogger."""
    for callback in callbacks:
        if hasattr(callback, "use_run"):
            callback.use_run(splits, output_dir)
