"""Text vectorization inside the model: the layer is fitted by the data layer (expkit.data.text_vectorize)."""

from __future__ import annotations

from expkit.data.text_vectorize import text_vectorizer, vocabulary

__all__ = ["text_vectorizer", "vocabulary"]
