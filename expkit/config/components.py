"""Components a config names (layers, optimizers, schedules, callbacks, losses, metrics) and their arguments, against the Keras catalog."""

from __future__ import annotations

import typing
from typing import Any

from expkit.config.arguments import argument_problem
from expkit.config.catalog import load_catalog
from expkit.config.problems import Problems
from expkit.config.schema import ExperimentConfig
from expkit.errors import did_you_mean, suggestion

# Metric/loss names Keras resolves by string without a module attribute of that name.
METRIC_ALIASES = {"accuracy", "acc", "crossentropy", "ce", "mse", "mae", "mape", "msle"}


def _check_kwargs(problems: Problems, key: str, kind: str, spec: dict[str, Any], catalog: dict[str, list[str]], skip: set[str]) -> None:
    """`spec` is {type: Name, **kwargs}: check Name against `catalog` and the kwargs against its signature."""
    if "_target_" in spec:
        if "type" in spec:
            problems.add(key, "give either `type` or `_target_`, not both")
        return
    name = spec.get("type")
    if not isinstance(name, str):
        problems.add(key, f"needs `type: <Keras {kind} name>` or `_target_: package.Class`")
        return
    if name not in catalog:
        problems.add(f"{key}.type", f"unknown {kind} '{name}'", suggestion(name, catalog, noun="known"))
        return
    allowed = catalog[name]
    for arg in spec:
        if arg not in allowed and arg not in skip:
            best = did_you_mean(arg, allowed)
            problems.add(
                f"{key}.{arg}", f"{name} has no argument '{arg}'", f"did you mean '{best}'?" if best else f"allowed: {', '.join(allowed)}"
            )
        elif kind != "layer" and arg not in skip and (problem := argument_problem(arg, spec[arg])):  # layers: see layer_checker
            problems.add(f"{key}.{arg}", *problem)


def layer_catalog() -> dict[str, list[str]]:
    """Every layer name validation accepts: Keras layers, keras.applications models, and layers registered with expkit."""
    from expkit.config.catalog import _init_params
    from expkit.registry import LAYERS

    catalog = load_catalog()
    known = {**{n: [*p, "trainable"] for n, p in catalog.get("applications", {}).items()}, **catalog["layers"]}
    for name, obj in LAYERS.own().items():
        known.setdefault(name, _init_params(obj) if isinstance(obj, type) else list(typing.get_type_hints(obj)) or [])
    return known


def layer_checker(problems: Problems) -> Any:
    """check(key, spec, skip): a layer spec's type, kwargs, activation and dropout rate."""
    layers = layer_catalog()
    activations = set(load_catalog()["activations"])

    def check(key: str, spec: dict[str, Any], skip: set[str]) -> None:
        _check_kwargs(
            problems, key, "layer", {k: v for k, v in spec.items() if k not in skip or k in ("type", "_target_")}, layers, {"type"}
        )
        rate = spec.get("rate")
        if "Dropout" in str(spec.get("type")) and isinstance(rate, int | float) and not 0 <= rate < 1:
            problems.add(f"{key}.rate", f"dropout rate must be in [0, 1), got {rate}", "0.5 drops half the units")
        known = layers.get(str(spec.get("type")), [])
        for arg, value in spec.items():
            problem = argument_problem(arg, value) if arg in known and arg not in skip else None
            if problem and not any(item.startswith(f"{key}.{arg}: ") for item in problems.items):
                problems.add(f"{key}.{arg}", *problem)
        act = spec.get("activation")
        if isinstance(act, str) and not act.startswith("$") and act not in activations:
            problems.add(f"{key}.activation", f"unknown activation '{act}'", suggestion(act, activations, noun="known"))

    return check


def check_components(config: ExperimentConfig, problems: Problems) -> None:
    catalog = load_catalog()
    check_layer = layer_checker(problems)
    for i, layer in enumerate(config.model.layers):
        check_layer(f"model.layers.{i}", layer, set())
        if "trainable" in layer and not isinstance(layer["trainable"], bool):
            problems.add(f"model.layers.{i}.trainable", f"must be true or false, got {layer['trainable']!r}")
    for i, layer in enumerate(config.dataset.augment):
        check_layer(f"dataset.augment.{i}", layer, set())
    if config.features is not None and config.features.base not in catalog.get("applications", {}):
        problems.add("features.base", f"unknown keras.applications base '{config.features.base}'", "e.g. VGG16, ResNet50, MobileNetV2")
    for i, phase in enumerate(config.phases):
        if phase.optimizer is not None:
            spec = phase.optimizer.model_dump()
            _check_kwargs(
                problems,
                f"phases.{i}.optimizer",
                "optimizer",
                spec,
                {k.lower(): v for k, v in catalog["optimizers"].items()} | catalog["optimizers"],
                {"type"},
            )
    opt = config.optimizer.model_dump()
    _check_kwargs(
        problems, "optimizer", "optimizer", opt, {k.lower(): v for k, v in catalog["optimizers"].items()} | catalog["optimizers"], {"type"}
    )
    if isinstance(config.optimizer.learning_rate, dict):
        _check_kwargs(problems, "optimizer.learning_rate", "schedule", config.optimizer.learning_rate, catalog["schedules"], {"type"})
    for name, spec in config.callbacks.items():
        _check_kwargs(problems, f"callbacks.{name}", "callback", spec, catalog["callbacks"], {"type"})
    _check_loss_and_metrics(problems, "model", config.model.loss, config.model.metrics)
    for name, spec in (config.model.outputs or {}).items():
        metrics = spec.get("metrics", [])
        if not isinstance(metrics, list):
            problems.add(f"model.outputs.{name}.metrics", f"must be a list, got {metrics!r}")
            metrics = []
        _check_loss_and_metrics(problems, f"model.outputs.{name}", spec.get("loss"), metrics)


def _check_loss_and_metrics(problems: Problems, prefix: str, loss: Any, metrics: list[Any]) -> None:
    catalog = load_catalog()
    if isinstance(loss, str) and loss not in catalog["losses"] and loss not in METRIC_ALIASES:
        problems.add(
            f"{prefix}.loss", f"unknown loss '{loss}'", suggestion(loss, [n for n in catalog["losses"] if n.islower()], noun="known")
        )
    for i, metric in enumerate(metrics):
        if isinstance(metric, str) and metric not in catalog["metrics"] and metric not in METRIC_ALIASES:
            problems.add(
                f"{prefix}.metrics.{i}",
                f"unknown metric '{metric}'",
                suggestion(metric, [n for n in catalog["metrics"] if n.islower()] + sorted(METRIC_ALIASES), noun="known"),
            )
