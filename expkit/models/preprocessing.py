"""Typed features -> Keras preprocessing layers fitted on the training split, inside the model.

Each feature type (expkit.config.features) has a builder here: it takes the raw training column and returns the
model's named raw input and its encoded tensor. Statistics (means, medians, variances, vocabularies) come from the
training split only (per fold under k-fold: the runner builds the model on each fold's training part). The layers
hold them, so the saved model takes raw rows: numbers with NaN for missing, strings with "" for missing.

With a sequential `layers:` model the encoded features are concatenated (in column order) into one vector; a graph
model names features as its `inputs` and routes each one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from expkit.errors import ExpkitError, suggestion
from expkit.models.builder import build_layer, call_layer

# The IntegerLookup out-of-vocabulary token: not a value a column holds (-1 stands for a missing integer category).
INT_OOV = -(2**62)

Built = tuple[Any, Any]  # (raw keras.Input, encoded tensor)
BUILDERS: dict[str, Callable[[str, Any, np.ndarray], Built]] = {}


def feature_builder(type_name: str) -> Callable[[Callable[[str, Any, np.ndarray], Built]], Callable[[str, Any, np.ndarray], Built]]:
    """Register the builder of feature type `type_name`: builder(column, spec, training column) -> (Input, encoded)."""

    def add(fn: Callable[[str, Any, np.ndarray], Built]) -> Callable[[str, Any, np.ndarray], Built]:
        BUILDERS[type_name] = fn
        return fn

    return add


@keras.saving.register_keras_serializable(package="expkit")
class Impute(keras.layers.Layer):
    """Missing (NaN) numbers -> `fill_value`, fitted on the training split."""

    def __init__(self, fill_value: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fill_value = float(fill_value)

    def call(self, x: Any) -> Any:
        x = keras.ops.cast(x, "float32")
        return keras.ops.where(keras.ops.isnan(x), keras.ops.full_like(x, self.fill_value), x)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "fill_value": self.fill_value}


@keras.saving.register_keras_serializable(package="expkit")
class IsMissing(keras.layers.Layer):
    """1.0 where the number is missing (NaN), else 0.0."""

    def call(self, x: Any) -> Any:
        return keras.ops.cast(keras.ops.isnan(keras.ops.cast(x, "float32")), "float32")


def layer_name(column: str) -> str:
    """A Keras-safe name for a column's layers."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", column) or "feature"


def raw_dtype(spec: Any, train: np.ndarray) -> str:
    """The dtype of a column's raw model input."""
    if train.dtype == object:
        return "string"
    return "int64" if np.issubdtype(train.dtype, np.integer) else "float32"


@feature_builder("numeric")
def numeric(column: str, spec: Any, train: np.ndarray) -> Built:
    name = layer_name(column)
    raw = keras.Input(shape=(1,), dtype="float32", name=column)
    values = train.astype(np.float64)
    present = values[~np.isnan(values)]
    if spec.impute == "constant" or not len(present):
        fill = spec.fill_value
    else:
        fill = float(np.median(present) if spec.impute == "median" else present.mean())
    x = Impute(fill, name=f"{name}_impute")(raw)
    if spec.normalize:
        filled = np.where(np.isnan(values), fill, values)
        variance = float(filled.var()) or 1.0
        x = keras.layers.Normalization(mean=float(filled.mean()), variance=variance, name=f"{name}_normalize")(x)
    if spec.missing_indicator:
        x = keras.layers.Concatenate(name=f"{name}_with_missing")([x, IsMissing(name=f"{name}_missing")(raw)])
    return raw, x


def vocabulary(train: np.ndarray, limit: int | None) -> list[Any]:
    """The training values, most frequent first (ties by value), at most `limit` of them."""
    values, counts = np.unique(train, return_counts=True)
    order = sorted(range(len(values)), key=lambda i: (-counts[i], str(values[i])))
    kept = [values[i] for i in order][:limit] if limit else [values[i] for i in order]
    return [str(v) for v in kept] if train.dtype == object else [int(v) for v in kept]


@feature_builder("categorical")
def categorical(column: str, spec: Any, train: np.ndarray) -> Built:
    name = layer_name(column)
    strings = train.dtype == object
    raw = keras.Input(shape=(1,), dtype="string" if strings else "int64", name=column)
    vocab = vocabulary(train, spec.max_categories)
    mode = "one_hot" if spec.encoding == "one_hot" else "int"
    if strings:
        lookup = keras.layers.StringLookup(vocabulary=vocab, num_oov_indices=1, output_mode=mode, name=f"{name}_lookup")
    else:
        lookup = keras.layers.IntegerLookup(
            vocabulary=np.asarray(vocab, dtype=np.int64), num_oov_indices=1, oov_token=INT_OOV, output_mode=mode, name=f"{name}_lookup"
        )
    x = lookup(raw)
    if spec.encoding == "embedding":
        x = keras.layers.Embedding(len(vocab) + 1, spec.embedding_dim, name=f"{name}_embedding")(x)
        x = keras.layers.Reshape((spec.embedding_dim,), name=f"{name}_flat")(x)
    return raw, x


@feature_builder("text")
def text(column: str, spec: Any, train: np.ndarray) -> Built:
    from expkit.models.text import text_vectorizer

    raw = keras.Input(shape=(1,), dtype="string", name=column)
    layer = text_vectorizer(spec, train, name=f"{layer_name(column)}_vectorize")
    x = layer(raw)
    if spec.output_mode != "int" and len(x.shape) == 3:
        x = keras.layers.Reshape((x.shape[-1],))(x)
    return raw, x


@feature_builder("passthrough")
def passthrough(column: str, spec: Any, train: np.ndarray) -> Built:
    raw = keras.Input(shape=(1,), dtype="float32", name=column)
    return raw, raw


def encode_features(feature_types: dict[str, Any], x_train: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, Any]]:
    """({column: raw Input}, {column: encoded tensor}), every layer fitted on `x_train` (the training split only)."""
    raws, encoded = {}, {}
    for column, spec in feature_types.items():
        raws[column], encoded[column] = BUILDERS[spec.type](column, spec, x_train[column])
    return raws, encoded


def build_table_model(config: Any, splits: Any) -> Any:
    """The model on raw typed features: preprocessing layers fitted on splits.x_train, then the configured layers/graph."""
    raws, encoded = encode_features(splits.feature_types, splits.x_train)
    if config.model.is_graph:
        from expkit.models.graph import GraphBuilder

        names = list(config.model.inputs or {})
        for name in names:
            if name not in encoded:
                raise ExpkitError(
                    f"the graph input '{name}' is not a feature of the table", key=f"model.inputs.{name}", hint=suggestion(name, encoded)
                )
        used = {n: encoded[n] for n in names}
        return GraphBuilder(config.model).build_on(used, {n: raws[n] for n in names}, config.name)
    parts = list(encoded.values())
    x = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="features")(parts)
    for i, spec in enumerate(config.model.layers):
        key = f"model.layers.{i}"
        x = call_layer(build_layer(spec, key=key), x, key)
    return keras.Model(raws, x, name=config.name)


def trainable_params(model: Any) -> int:
    """Trainable parameters only (preprocessing layers hold fitted, non-trainable statistics)."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))
