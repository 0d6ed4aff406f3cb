"""Typed table features: one registered options schema per feature `type` (numeric, categorical, text, passthrough).

A table source (`dataset.source: table`) names its columns under `dataset.features`, each with a type, either as
a bare name (`island: categorical`) or as a mapping (`sex: {type: categorical, encoding: embedding}`). What each
type fits on the training split (means, vocabularies) becomes Keras preprocessing layers inside the model
(expkit/models/preprocessing.py), so the logged model takes raw rows. This module imports no TensorFlow.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from expkit.config.schema import PositiveInt, Strict
from expkit.config.text import TextOptions

FEATURE_TYPES: dict[str, type[BaseModel]] = {}


def register_feature_type(cls: type[BaseModel]) -> type[BaseModel]:
    """Make `cls` (with `type: Literal["name"]`) a feature type; its builder is registered in expkit.models.preprocessing."""
    (name,) = typing.get_args(cls.model_fields["type"].annotation)
    FEATURE_TYPES[name] = cls
    return cls


@register_feature_type
class NumericFeature(Strict):
    """A number: missing values imputed (training mean, median, or a constant), then normalized with the training statistics."""

    type: Literal["numeric"] = "numeric"
    impute: Literal["mean", "median", "constant"] = "mean"
    # The value missing entries get with impute: constant.
    fill_value: float = 0.0
    # Add a 0/1 input that says the value was missing.
    missing_indicator: bool = False
    normalize: bool = True


@register_feature_type
class CategoricalFeature(Strict):
    """Strings or integers from a fixed set: a vocabulary from the training split, one out-of-vocabulary bucket.

    `encoding`: one_hot (vocabulary size + 1 columns) or embedding (`embedding_dim` trained values).
    `unseen`: what a category never seen in training does at predict time: `oov` (the out-of-vocabulary bucket)
    or `error` (the prediction is refused with a message naming the column and the value).
    A missing value is a category of its own (the empty string, or -1 for integer columns).
    """

    type: Literal["categorical"] = "categorical"
    encoding: Literal["one_hot", "embedding"] = "one_hot"
    embedding_dim: PositiveInt = 8
    # Keep the `max_categories` most frequent values (null: all).
    max_categories: PositiveInt | None = None
    unseen: Literal["oov", "error"] = "oov"


@register_feature_type
class TextFeature(TextOptions):
    """Free text: a Keras TextVectorization fitted on the training split (the options of expkit.config.text)."""

    type: Literal["text"] = "text"


@register_feature_type
class PassthroughFeature(Strict):
    """A number given to the model as it is (no imputation: a missing value is an error)."""

    type: Literal["passthrough"] = "passthrough"


if typing.TYPE_CHECKING:
    FeatureSpec = BaseModel
else:
    FeatureSpec = Annotated[typing.Union[tuple(FEATURE_TYPES.values())], Field(discriminator="type")]  # noqa: UP007


def feature_spec(value: Any) -> Any:
    """A bare type name (`numeric`) becomes `{type: numeric}`; a mapping is kept (pydantic picks the class by `type`)."""
    if isinstance(value, str):
        return {"type": value}
    return value
