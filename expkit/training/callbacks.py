"""Keras callbacks from the `callbacks` config group, plus the ones every run gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from expkit.registry import Registry, build_component


def _keras_callbacks() -> list[Any]:
    import keras

    import expkit.training.activations  # noqa: F401  (registers expkit's own callbacks)

    return [keras.callbacks]


CALLBACKS = Registry("callback", _keras_callbacks)


def resolve_paths(spec: dict[str, Any], output_dir: Path) -> dict[str, Any]:
    """Relative file paths in callback kwargs are placed inside the run's output folder."""
    spec = dict(spec)
    for arg in ("filepath", "filename", "log_dir", "backup_dir"):
        if isinstance(spec.get(arg), str) and not Path(spec[arg]).is_absolute():
            spec[arg] = str(output_dir / spec[arg])
    return spec


def make_callbacks(specs: dict[str, dict[str, Any]], output_dir: Path) -> list[Any]:
    """Build each named callback from `{type: Name, **kwargs}` or `{_target_: ..., **kwargs}`."""
    return [build_component(resolve_paths(spec, output_dir), CALLBACKS, key=f"callbacks.{name}") for name, spec in specs.items()]


def attach_data(callbacks: list[Any], splits: Any, output_dir: Path) -> None:
    """Hand the run's data and folder to callbacks that ask for them (a `use_run(splits, output_dir)` method), e.g. ActivationLogger."""
    for callback in callbacks:
        if hasattr(callback, "use_run"):
            callback.use_run(splits, output_dir)
