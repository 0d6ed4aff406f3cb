"""Datasets: sources return raw arrays, preprocessing steps turn them into model inputs.

Imported lazily, so that validation can read the source registry (expkit.data.named) without numpy.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Splits", "load_splits"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from expkit.data import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
