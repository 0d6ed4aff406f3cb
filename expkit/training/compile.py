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
    kind = "metric" if key.startswith("model.metrics") else key.split(".")[-1]  # model.metrics.0 -> "metric", model.loss -> "loss"
    return build_component(spec, Registry(kind, lambda: [namespace]), key=key)


def compile_model(
    model: Any,
    optimizer: dict[str, Any],
    loss: str | dict[str, Any],
    metrics: list[Any] | dict[str, list[Any]],
    *,
    loss_weights: dict[str, float] | None = None,
    steps_per_execution: int = 1,
    jit_compile: bool = False,
) -> None:
    """model.compile with everything resolved from config (plus the trainer's speed settings).

    With `loss_weights`, loss and metrics are per output name.
    """
    import keras

    if loss_weights is not None:  # a graph model: {output name: spec}
        losses = {n: resolve_named(s, keras.losses, f"model.outputs.{n}.loss") for n, s in loss.items()}  # type: ignore[union-attr]
        named_metrics = {
            n: [resolve_named(m, keras.metrics, f"model.outputs.{n}.metrics.{i}") for i, m in enumerate(ms)]
            for n, ms in metrics.items()  # type: ignore[union-attr]
        }
        compiled: dict[str, Any] = {"loss": losses, "metrics": named_metrics or None, "loss_weights": loss_weights}
    else:
        compiled = {
            "loss": resolve_named(loss, keras.losses, "model.loss"),
            "metrics": [resolve_named(m, keras.metrics, f"model.metrics.{i}") for i, m in enumerate(metrics)],
        }
    try:
        model.compile(optimizer=make_optimizer(optimizer), steps_per_execution=steps_per_execution, jit_compile=jit_compile, **compiled)
    except ValueError as exc:
        raise ExpkitError(f"compile failed: {str(exc).splitlines()[0]}", key="model") from None
