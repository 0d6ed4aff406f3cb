"""The options of text vectorization: one schema, used by the text-folder source and by a table's `text` features.

The vocabulary is fitted (`adapt`) on the training split only and lives inside the model as a Keras
`TextVectorization` layer, so the logged model takes raw strings (see expkit/data/text_vectorize.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from expkit.config.schema import PositiveInt, Strict


class TextOptions(Strict):
    """How raw strings become a model-ready tensor (Keras `TextVectorization`).

    - `output_mode`: `multi_hot` (the book's IMDB encoding: 1 where a token occurs), `count`, `tf_idf`,
      or `int` (token ids, padded or cut to `sequence_length`, for Embedding / recurrent / Conv1D models).
    - `max_tokens`: vocabulary size, the out-of-vocabulary and (for `int`) padding tokens included.
    - `ngrams`: also index n-grams up to this length (2 = unigrams and bigrams).
    - `standardize`: `lower_and_strip_punctuation` (Keras' default), `lower`, `strip_punctuation`, or `none`.
    - `split`: `whitespace` or `character`.
    """

    output_mode: Literal["multi_hot", "count", "tf_idf", "int"] = "multi_hot"
    max_tokens: PositiveInt | None = 20000
    ngrams: PositiveInt | None = None
    sequence_length: PositiveInt | None = None
    standardize: Literal["lower_and_strip_punctuation", "lower", "strip_punctuation", "none"] = "lower_and_strip_punctuation"
    split: Literal["whitespace", "character"] = "whitespace"

    @model_validator(mode="after")
    def _sequence_length_only_for_int(self) -> TextOptions:
        if self.sequence_length is not None and self.output_mode != "int":
            raise ValueError(f"sequence_length applies only to output_mode: int (got output_mode: {self.output_mode})")
        return self
