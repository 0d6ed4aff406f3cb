"""Build a keras.Model from the `model` config: a sequential `layers` list, or a graph of named inputs, nodes and outputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from expkit.errors import ExpkitError
from expkit.models.applications import Applications
from expkit.registry import LAYERS, build_component


def _keras_layers() -> list[Any]:
    import keras

    return [keras.layers, Applications()]


# Layer names (expkit.registry.LAYERS): keras.layers first, then keras.applications models, then layers registered with LAYERS.register.
LAYERS.add_namespaces(_keras_layers)


def build_layer(spec: dict[str, Any], *, key: str, name: str | None = None) -> Any:
    """One layer (or whole model used as a layer) from `{type|_target_, trainable?, **kwargs}`."""
    import keras

    spec = dict(spec)
    trainable = spec.pop("trainable", None)
    extra = {"name": name} if name and "type" in spec and "name" not in spec else {}
    layer = build_component(spec, LAYERS, key=key, **extra)
    if not isinstance(layer, keras.layers.Layer):
        raise ExpkitError(f"{type(layer).__name__} is not a keras Layer or Model", key=key)
    if trainable is not None:
        layer.trainable = bool(trainable)
    return layer


def output_dtype() -> str | None:
    """The dtype of output layers: float32 under a mixed precision policy (their activations, outputs and losses stay
    float32, as Keras' mixed-precision guide has it), else None (the policy's own)."""
    import keras

    return "float32" if keras.config.dtype_policy().name.startswith("mixed_") else None


def output_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """An output layer's spec, with `dtype: float32` under a mixed policy when it names a Keras layer and sets no dtype."""
    import keras

    dtype = output_dtype()
    if dtype is None or "dtype" in spec or not hasattr(keras.layers, str(spec.get("type", ""))):
        return spec
    return {**spec, "dtype": dtype}


def call_layer(layer: Any, x: Any, key: str) -> Any:
    """`layer(x)`, with shape and dtype mismatches turned into an error naming `key`."""
    try:
        return layer(x)
    except ExpkitError:
        raise
    except Exception as exc:  # shape and dtype mismatches surface as assorted exception types
        shapes = [tuple(t.shape) for t in x] if isinstance(x, list) else tuple(x.shape)
        raise ExpkitError(
            f"{type(layer).__name__} cannot take input of shape {shapes}: {str(exc).splitlines()[0]}",
            key=key,
            hint="check the layer order and `in`, or add a Flatten/Reshape layer or a dataset.preprocess step",
        ) from None


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
        x = call_layer(build_layer(spec if i < len(layers) - 1 else output_spec(spec), key=key), x, key)
    return keras.Model(inputs, x, name=name)
