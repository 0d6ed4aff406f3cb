"""Build a keras.Model from the `model` config: a list of layers applied in order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from expkit.errors import ExpkitError
from expkit.registry import Registry, build_component

# Keyword arguments every Keras layer accepts through **kwargs.
LAYER_BASE_KWARGS = ("input_dim", "input_shape")


def _keras_layers() -> list[Any]:
    import keras

    return [keras.layers, keras.applications]


LAYERS = Registry("layer", _keras_layers)


def build_model(
    layers: Sequence[dict[str, Any]],
    input_shape: Sequence[int],
    *,
    input_dtype: str = "float32",
    name: str = "model",
) -> Any:
    """Apply `layers` in order to an Input of `input_shape` and return the keras.Model."""
    import keras

    inputs = keras.Input(shape=tuple(input_shape), dtype=input_dtype, name="inputs")
    x = inputs
    for i, spec in enumerate(layers):
        key = f"model.layers.{i}"
        spec = dict(spec)
        trainable = spec.pop("trainable", True)  # also for keras.applications bases, whose constructors lack it
        layer = build_component(spec, LAYERS, key=key)
        if not isinstance(layer, keras.layers.Layer):
            raise ExpkitError(f"{type(layer).__name__} is not a keras Layer", key=key)
        layer.trainable = bool(trainable)
        try:
            x = layer(x)
        except Exception as exc:  # shape and dtype mismatches surface as assorted exception types
            raise ExpkitError(
                f"{type(layer).__name__} cannot take input of shape {tuple(x.shape)}: {str(exc).splitlines()[0]}",
                key=key,
                hint="check the layer order, or add a Flatten/Reshape layer or a dataset.preprocess.x step",
            ) from None
    return keras.Model(inputs, x, name=name)
