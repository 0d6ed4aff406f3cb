"""Datasets: sources return raw arrays, preprocessing steps turn them into model inputs."""

from expkit.data.pipeline import Splits, load_splits

__all__ = ["Splits", "load_splits"]
