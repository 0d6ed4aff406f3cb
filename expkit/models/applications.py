"""Whole models used as layers: `keras.applications` by name, with `weights: imagenet | null | <file>`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from expkit.errors import ExpkitError


class Applications:
    """A layer-registry namespace over keras.applications, checking `weights` before Keras tries a download."""

    def __getattr__(self, name: str) -> Any:
        import keras

        factory = getattr(keras.applications, name, None)
        if factory is None or not name[:1].isupper() or not callable(factory):
            raise AttributeError(name)
        return lambda **kwargs: build_application(name, factory, kwargs)

    def __dir__(self) -> list[str]:
        import keras

        return [n for n in dir(keras.applications) if n[:1].isupper()]


def build_application(name: str, factory: Any, kwargs: dict[str, Any]) -> Any:
    """`factory(**kwargs)`; a weights file must exist, and a failed ImageNet download becomes a clear error."""
    weights = kwargs.get("weights", "imagenet")
    if weights not in (None, "imagenet") and not Path(str(weights)).expanduser().is_file():
        raise ValueError(f"weights file {weights} does not exist (weights: imagenet, null, or a path to a .weights.h5/.h5 file)")
    if weights is not None and weights != "imagenet":
        kwargs = {**kwargs, "weights": str(Path(str(weights)).expanduser())}
    try:
        return factory(**kwargs)
    except (OSError, ConnectionError) as exc:
        raise ExpkitError(
            f"cannot get the {weights} weights of {name}: {exc.__class__.__name__}",
            hint="with no internet, download the weights file elsewhere and give its path as weights: <file>, or use weights: null",
        ) from None
