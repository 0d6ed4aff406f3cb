"""Name -> component lookup: Keras' own namespaces first, then expkit's, then `_target_`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from expkit.errors import ExpkitError, suggestion

T = TypeVar("T")


class Registry:
    """Resolves a component name (layer, optimizer, callback, ...) to a class or function."""

    def __init__(self, kind: str, namespaces: Callable[[], list[Any]] = lambda: [], *, ignore_case: bool = False) -> None:
        self.kind = kind
        self.ignore_case = ignore_case  # accept `rmsprop` for RMSprop, as Keras' own string identifiers do
        self._loaders = [namespaces]  # called lazily, so defining a registry imports nothing heavy
        self._own: dict[str, Any] = {}

    def add_namespaces(self, namespaces: Callable[[], list[Any]]) -> None:
        """Also look names up in the modules `namespaces()` returns (lazily, after the ones given before): lets the layer
        that builds a component supply Keras' own names for a registry that lower layers can read without importing it."""
        self._loaders.append(namespaces)

    def _namespaces(self) -> list[Any]:
        return [ns for load in self._loaders for ns in load()]

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: make `obj` available under `name`."""

        def add(obj: T) -> T:
            self._own[name] = obj
            return obj

        return add

    def own(self) -> dict[str, Any]:
        """The components registered with expkit (not Keras' own)."""
        return dict(self._own)

    def names(self) -> list[str]:
        found = set(self._own)
        for ns in self._namespaces():
            found.update(n for n in dir(ns) if not n.startswith("_"))
        return sorted(found)

    def get(self, name: str, *, key: str) -> Any:
        """The component called `name`; `key` names the config entry for the error message."""
        for ns in self._namespaces():
            obj = getattr(ns, name, None)
            if obj is not None and not name.startswith("_"):
                return obj
        if name in self._own:
            return self._own[name]
        if self.ignore_case:
            for candidate in self.names():
                if candidate.lower() == name.lower() and candidate != name:
                    return self.get(candidate, key=key)
        raise ExpkitError(
            f"unknown {self.kind} '{name}'",
            key=key,
            hint=suggestion(name, self.names(), noun="known") + "; user classes go in `_target_: package.module.Class`",
        )


# Layer names: keras.layers first, then keras.applications models (both added by expkit.models.builder), then layers
# registered with LAYERS.register. Defined here so that config validation reads the registered ones without importing models.
LAYERS = Registry("layer")


def locate(path: str, *, key: str) -> Any:
    """Import `package.module.Name` for a `_target_` entry."""
    from hydra.utils import get_object

    try:
        return get_object(path)
    except Exception as exc:  # hydra raises ImportError or a plain Exception
        raise ExpkitError(
            f"cannot import _target_ '{path}' ({exc.__class__.__name__}: {str(exc).splitlines()[0]})",
            key=key,
            hint="give a dotted path to a class or function importable from where you run expkit",
        ) from None


def build_component(spec: dict[str, Any], registry: Registry, *, key: str, **extra: Any) -> Any:
    """Instantiate `{type: Name, **kwargs}` or `{_target_: pkg.Class, **kwargs}`."""
    spec = dict(spec)
    target = spec.pop("_target_", None)
    type_name = spec.pop("type", None)
    if (target is None) == (type_name is None):
        raise ExpkitError(f"give exactly one of `type` (a {registry.kind} name) or `_target_` (a dotted path)", key=key)
    factory = locate(target, key=f"{key}._target_") if target else registry.get(type_name, key=f"{key}.type")
    try:
        return factory(**spec, **extra)
    except (TypeError, ValueError) as exc:
        raise ExpkitError(f"cannot create {type_name or target}: {exc}", key=key) from None
