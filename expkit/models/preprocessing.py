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

from expkit.data.table_stats import ColumnStats, column_stats
from expkit.errors import ExpkitError, suggestion
from expkit.models.builder import build_layer, call_layer

# The IntegerLookup out-of-vocabulary token: not a value a column holds (-1 stands for a missing integer category).
INT_OOV = -(2**62)

Built = tuple[Any, Any]  # (raw keras.Input, encoded tensor)
Builder = Callable[[str, ColumnStats], Built]
BUILDERS: dict[str, Builder] = {}


def feature_builder(type_name: str) -> Callable[[Builder], Builder]:
    """Register the builder of feature type `type_name`: builder(column, training statistics) -> (Input, encoded)."""

    def add(fn: Builder) -> Builder:
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


@feature_builder("numeric")
def numeric(column: str, stats: ColumnStats) -> Built:
    spec, name = stats.spec, layer_name(column)
    raw = keras.Input(shape=(1,), dtype="float32", name=column)
    x = Impute(stats.fill_value(), name=f"{name}_impute")(raw)
    if spec.normalize:
        mean, variance = stats.normalization()
        x = keras.layers.Normalization(mean=mean, variance=variance, name=f"{name}_normalize")(x)
    if spec.missing_indicator:
        x = keras.layers.Concatenate(name=f"{name}_with_missing")([x, IsMissing(name=f"{name}_missing")(raw)])
    return raw, x


@feature_builder("categorical")
def categorical(column: str, stats: ColumnStats) -> Built:
    spec, name = stats.spec, layer_name(column)
    strings = stats.dtype == "string"
    raw = keras.Input(shape=(1,), dtype="string" if strings else "int64", name=column)
    vocab = stats.vocabulary()
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
def text(column: str, stats: ColumnStats) -> Built:
    from expkit.models.text import text_vectorizer

    spec = stats.spec
    raw = keras.Input(shape=(1,), dtype="string", name=column)
    texts = stats.texts[0] if len(stats.texts) == 1 else np.concatenate(stats.texts)
    layer = text_vectorizer(spec, texts, name=f"{layer_name(column)}_vectorize")
    x = layer(raw)
    if spec.output_mode != "int" and len(x.shape) == 3:
        x = keras.layers.Reshape((x.shape[-1],))(x)
    return raw, x


@feature_builder("passthrough")
def passthrough(column: str, stats: ColumnStats) -> Built:
    raw = keras.Input(shape=(1,), dtype="float32", name=column)
    return raw, raw


def encode_features(statistics: dict[str, ColumnStats]) -> tuple[dict[str, Any], dict[str, Any]]:
    """({column: raw Input}, {column: encoded tensor}), every layer fitted with the training split's statistics."""
    raws, encoded = {}, {}
    for column, stats in statistics.items():
        raws[column], encoded[column] = BUILDERS[stats.spec.type](column, stats)
    return raws, encoded


def training_statistics(splits: Any) -> dict[str, ColumnStats]:
    """The training split's column statistics: gathered by a streamed source, else computed from x_train (kept on splits)."""
    stats = getattr(splits, "statistics", None)
    if stats is None:
        stats = column_stats(splits.feature_types, splits.x_train)
        splits.statistics = stats
    return stats  # type: ignore[no-any-return]


def build_table_model(config: Any, splits: Any) -> Any:
    """The model on raw typed features: preprocessing layers fitted on splits.x_train, then the configured layers/graph."""
    raws, encoded = encode_features(training_statistics(splits))
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
