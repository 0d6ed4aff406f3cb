"""Write expkit/config/keras_catalog.json from the installed Keras: `python -m expkit.training.keras_catalog` after a Keras upgrade.

A developer tool. It lives above config (it reads Keras and expkit's own callbacks), so that config reads the stored
catalog without importing models or training."""

from __future__ import annotations

import inspect
import json
from typing import Any

from expkit.config.catalog import CATALOG_FILE, _init_params
from expkit.training.activations import ActivationLogger

# Keyword arguments every Keras layer accepts through **kwargs.
LAYER_BASE_KWARGS = ("input_dim", "input_shape")


def _classes(module: Any, base: type) -> dict[str, list[str]]:
    out = {}
    for name in dir(module):
        obj = getattr(module, name)
        if inspect.isclass(obj) and issubclass(obj, base) and not name.startswith("_"):
            out[name] = _init_params(obj)
    return out


def expkit_callbacks() -> dict[str, list[str]]:
    """expkit's own callbacks (found by name after Keras'), with their constructor arguments."""
    return {"ActivationLogger": _init_params(ActivationLogger)}


def build_catalog() -> dict[str, Any]:
    """Read names and signatures from the installed Keras."""
    import keras

    layers = _classes(keras.layers, keras.layers.Layer)
    for params in layers.values():
        params.extend(k for k in LAYER_BASE_KWARGS if k not in params)
    applications = {
        name: [p for p in inspect.signature(obj).parameters if p not in ("kwargs", "args")]
        for name, obj in vars(keras.applications).items()
        if name[:1].isupper() and callable(obj)
    }
    functions = lambda mod: sorted(n for n in dir(mod) if not n.startswith("_") and callable(getattr(mod, n)))  # noqa: E731
    return {
        "keras_version": keras.__version__,
        "layers": layers,
        "applications": applications,
        "optimizers": _classes(keras.optimizers, keras.optimizers.Optimizer),
        "schedules": _classes(keras.optimizers.schedules, keras.optimizers.schedules.LearningRateSchedule),
        "callbacks": _classes(keras.callbacks, keras.callbacks.Callback) | expkit_callbacks(),
        "losses": functions(keras.losses),
        "metrics": functions(keras.metrics),
        "activations": sorted(n for n in dir(keras.activations) if not n.startswith("_") and n not in ("get", "serialize", "deserialize")),
    }


if __name__ == "__main__":
    CATALOG_FILE.write_text(json.dumps(build_catalog(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {CATALOG_FILE}")
