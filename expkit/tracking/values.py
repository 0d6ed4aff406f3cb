"""Metric values as MLflow should store them: readable in the UI, ordered exactly as the values computed.

Keras computes metrics in float32; as Python floats they print at float64 length (`0.9172000288963318`), and the MLflow
UI shows every digit. `readable` stores such a value as the shortest decimal that is the same float32 (`0.9172`).
That map is strictly increasing on float32 values, so every comparison between them (the sweep's best child,
`expkit runs best`, `runs compare`) gives the same answer as before; a value that is not a float32 (a float64 mean, a
time) is stored unchanged.
"""

from __future__ import annotations

import math

import numpy as np


def readable(value: float) -> float:
    """`value` as the shortest decimal that reads back as the same float32, if it is a float32; else unchanged."""
    number = float(value)
    if not math.isfinite(number):
        return number
    single = np.float32(number)
    if float(single) != number:  # not a float32 value: rounding it would lose information
        return number
    return float(str(single))  # numpy prints a float32 as the shortest decimal that round-trips in float32


def readable_all(metrics: dict[str, float]) -> dict[str, float]:
    return {k: readable(v) for k, v in metrics.items()}
