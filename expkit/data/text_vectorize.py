"""Text vectorization: a Keras `TextVectorization` layer adapted on the training strings only.

Fitted here, in the data layer (the text_dir source's `fit`, and a table's text features through
expkit.models.preprocessing); the layer then sits inside the logged model, which therefore takes raw strings.
"""

from __future__ import annotations

from typing import Any

from expkit.config.text import TextOptions


def text_vectorizer(options: TextOptions, train_texts: Any, *, name: str | None = None, batch_size: int = 1024) -> Any:
    """A `TextVectorization` layer for `options`, its vocabulary fitted on `train_texts` (the training split only).

    `train_texts` is a 1-D array or list of strings, or a `tf.data.Dataset` of string batches (streamed sources).
    """
    import keras
    import numpy as np

    layer = keras.layers.TextVectorization(
        max_tokens=options.max_tokens,
        standardize=None if options.standardize == "none" else options.standardize,
        split=options.split,
        ngrams=options.ngrams,
        output_mode=options.output_mode,
        output_sequence_length=options.sequence_length,
        name=name,
    )
    if isinstance(train_texts, list | tuple | np.ndarray):
        train_texts = np.asarray(train_texts, dtype=object).astype(str)
        layer.adapt(train_texts, batch_size=batch_size)
    else:
        layer.adapt(train_texts)
    return layer


def vocabulary(layer: Any) -> list[str]:
    """The fitted vocabulary, in index order (for the run's `vocabulary.txt` artifact)."""
    return [str(t) for t in layer.get_vocabulary()]
