"""Optimizer, loss and metrics from config."""

from __future__ import annotations

from typing import Any

from expkit.errors import ExpkitError, suggestion
from expkit.registry import Registry, build_component


def _schedules() -> list[Any]:
    import keras

    return [keras.optimizers.schedules]


SCHEDULES = Registry("learning-rate schedule", _schedules)
OPTIMIZERS = Registry("optimizer")  # expkit's own optimizers; Keras' are found case-insensitively below


def make_optimizer(spec: dict[str, Any]) -> Any:
    """A Keras optimizer from `{type: RMSprop, learning_rate: 1e-3 | {type: ExponentialDecay, ...}, **kwargs}`."""
    import keras

    spec = dict(spec)
    lr = spec.pop("learning_rate", None)
    if isinstance(lr, dict):
        lr = build_component(lr, SCHEDULES, key="optimizer.learning_rate")
    name = spec.get("type", "")
    by_lower = {n.lower(): getattr(keras.optimizers, n) for n in dir(keras.optimizers) if isinstance(getattr(keras.optimizers, n), type)}
    if "_target_" not in spec and name.lower() in by_lower and name not in OPTIMIZERS.names():
        spec.pop("type")
        cls = by_lower[name.lower()]
        try:
            return cls(**({"learning_rate": lr} if lr is not None else {}), **spec)
        except (TypeError, ValueError) as exc:
            raise ExpkitError(f"cannot create optimizer {cls.__name__}: {exc}", key="optimizer") from None
    if "_target_" not in spec and name not in OPTIMIZERS.names():
        raise ExpkitError(f"unknown optimizer '{name}'", key="optimizer.type", hint=suggestion(name, by_lower, noun="known"))
    return build_component(spec, OPTIMIZERS, key="optimizer", **({"learning_rate": lr} if lr is not None else {}))


def resolve_named(spec: str | dict[str, Any], namespace: Any, key: str) -> Any:
    """A loss or metric: a Keras name string as is, or `{type: ClassName, **kwargs}` / `{_target_: ...}`."""
    if isinstance(spec, str):
        return spec
    return build_component(spec, Registry(key.split(".")[-1], lambda: [namespace]), key=key)


def compile_model(model: Any, optimizer: dict[str, Any], loss: str | dict[str, Any], metrics: list[Any]) -> None:
    """model.compile with everything resolved from config."""
    import keras

    try:
        model.compile(
            optimizer=make_optimizer(optimizer),
            loss=resolve_named(loss, keras.losses, "model.loss"),
            metrics=[resolve_named(m, keras.metrics, f"model.metrics.{i}") for i, m in enumerate(metrics)],
        )
    except ValueError as exc:
        raise ExpkitError(f"compile failed: {str(exc).splitlines()[0]}", key="model") from None
