"""Optimizer, loss and metrics from config."""

from __future__ import annotations

from typing import Any

from expkit.errors import ExpkitError
from expkit.registry import Registry, build_component


def _schedules() -> list[Any]:
    import keras

    return [keras.optimizers.schedules]


def _optimizers() -> list[Any]:
    import keras

    return [keras.optimizers]


SCHEDULES = Registry("learning-rate schedule", _schedules)
OPTIMIZERS = Registry("optimizer", _optimizers, ignore_case=True)


def make_optimizer(spec: dict[str, Any]) -> Any:
    """A Keras optimizer from `{type: RMSprop, learning_rate: 1e-3 | {type: ExponentialDecay, ...}, **kwargs}`."""
    spec = dict(spec)
    lr = spec.pop("learning_rate", None)
    if isinstance(lr, dict):
        lr = build_component(lr, SCHEDULES, key="optimizer.learning_rate")
    return build_component(spec, OPTIMIZERS, key="optimizer", **({"learning_rate": lr} if lr is not None else {}))


def resolve_named(spec: str | dict[str, Any], namespace: Any, key: str) -> Any:
    """A loss or metric: a Keras name string as is, or `{type: ClassName, **kwargs}` / `{_target_: ...}`."""
    if isinstance(spec, str):
        return spec
    return build_component(spec, Registry(key.split(".")[-1], lambda: [namespace]), key=key)


def compile_model(
    model: Any,
    optimizer: dict[str, Any],
    loss: str | dict[str, Any],
    metrics: list[Any],
    *,
    steps_per_execution: int = 1,
    jit_compile: bool = False,
) -> None:
    """model.compile with everything resolved from config (plus the trainer's speed settings)."""
    import keras

    try:
        model.compile(
            optimizer=make_optimizer(optimizer),
            loss=resolve_named(loss, keras.losses, "model.loss"),
            metrics=[resolve_named(m, keras.metrics, f"model.metrics.{i}") for i, m in enumerate(metrics)],
            steps_per_execution=steps_per_execution,
            jit_compile=jit_compile,
        )
    except ValueError as exc:
        raise ExpkitError(f"compile failed: {str(exc).splitlines()[0]}", key="model") from None
