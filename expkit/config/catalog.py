"""A snapshot of Keras' names and constructor signatures, so configs validate without TensorFlow.

Regenerate after a Keras upgrade with `python -m expkit.config.catalog`; a test fails when stale.
"""

from __future__ import annotations

import inspect
import json
from functools import cache
from pathlib import Path
from typing import Any

CATALOG_FILE = Path(__file__).with_name("keras_catalog.json")


@cache
def load_catalog() -> dict[str, Any]:
    """The stored catalog: {"keras_version", "layers", "optimizers", "callbacks", "losses", "metrics", "activations"}."""
    return json.loads(CATALOG_FILE.read_text())


def _init_params(cls: type) -> list[str]:
    """Constructor keyword names of `cls`, following **kwargs up the class hierarchy."""
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            break
        takes_kwargs = False
        for p in params:
            if p.kind is p.VAR_KEYWORD:
                takes_kwargs = True
            elif p.name != "self" and p.kind is not p.VAR_POSITIONAL and p.name not in names:
                names.append(p.name)
        if not takes_kwargs:
            break
    return names


def _classes(module: Any, base: type) -> dict[str, list[str]]:
    out = {}
    for name in dir(module):
        obj = getattr(module, name)
        if inspect.isclass(obj) and issubclass(obj, base) and not name.startswith("_"):
            out[name] = _init_params(obj)
    return out


def build_catalog() -> dict[str, Any]:
    """Read names and signatures from the installed Keras."""
    import keras

    from expkit.models.builder import LAYER_BASE_KWARGS

    layers = _classes(keras.layers, keras.layers.Layer)
    for params in layers.values():
        params.extend(k for k in LAYER_BASE_KWARGS if k not in params)
    for name in dir(keras.applications):  # whole pretrained models used as layers: {type: VGG16, weights: null, ...}
        obj = getattr(keras.applications, name)
        if name[:1].isupper() and callable(obj) and name not in layers:
            layers[name] = [*inspect.signature(obj).parameters, "trainable"]
    functions = lambda mod: sorted(n for n in dir(mod) if not n.startswith("_") and callable(getattr(mod, n)))  # noqa: E731
    return {
        "keras_version": keras.__version__,
        "layers": layers,
        "optimizers": _classes(keras.optimizers, keras.optimizers.Optimizer),
        "schedules": _classes(keras.optimizers.schedules, keras.optimizers.schedules.LearningRateSchedule),
        "callbacks": _classes(keras.callbacks, keras.callbacks.Callback),
        "losses": functions(keras.losses),
        "metrics": functions(keras.metrics),
        "activations": sorted(n for n in dir(keras.activations) if not n.startswith("_") and n not in ("get", "serialize", "deserialize")),
    }


if __name__ == "__main__":
    CATALOG_FILE.write_text(json.dumps(build_catalog(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {CATALOG_FILE}")
