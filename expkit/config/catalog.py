"""A snapshot of Keras' names and constructor signatures, so configs validate without TensorFlow.

Regenerate after a Keras upgrade with `python -m expkit.training.keras_catalog`; a test fails when stale.
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
    """The stored catalog: {"keras_version", "layers", "applications", "optimizers", "callbacks", "losses", "metrics", "activations"}."""
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
