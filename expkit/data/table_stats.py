"""What a table's preprocessing layers are fitted with: per-column statistics of the training rows, gathered in chunks.

The same accumulators serve an in-memory split (one chunk) and a streamed file (one pass over pandas chunks), so a
streamed model and an in-memory one fitted on the same rows get the same means, variances and vocabularies.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Values kept per numeric column for a median (all of them up to this many; a seeded uniform sample beyond).
MEDIAN_SAMPLE = 200_000


@dataclass
class ColumnStats:
    """One column's training statistics. `dtype` is the raw model input's: float32, int64 or string."""

    spec: Any
    dtype: str = "float32"
    count: int = 0  # present (non-missing) numbers
    missing: int = 0
    mean: float = 0.0
    m2: float = 0.0  # sum of squared deviations from the mean (Chan et al.'s parallel update)
    sample: list[np.ndarray] = field(default_factory=list)
    sampled: int = 0
    counts: Counter[Any] = field(default_factory=Counter)
    texts: list[np.ndarray] = field(default_factory=list)

    def add(self, values: np.ndarray, rng: np.random.Generator | None = None) -> None:
        """Fold one chunk of raw values (the loader's form: float32 with NaN, int64 with -1, str with "") in."""
        kind = self.spec.type
        if kind in ("numeric", "passthrough"):
            values = np.asarray(values, dtype=np.float64)
            present = values[~np.isnan(values)]
            self.missing += len(values) - len(present)
            if len(present):
                n, mean, m2 = len(present), float(present.mean()), float(((present - present.mean()) ** 2).sum())
                total = self.count + n
                delta = mean - self.mean
                self.mean += delta * n / total
                self.m2 += m2 + delta * delta * self.count * n / total
                self.count = total
                if getattr(self.spec, "impute", None) == "median":
                    self._keep(present, rng)
        elif kind == "categorical":
            self.dtype = "string" if values.dtype == object else "int64"
            uniques, counts = np.unique(values, return_counts=True)
            self.counts.update(dict(zip(uniques.tolist(), counts.tolist(), strict=True)))
        elif kind == "text":
            self.dtype = "string"
            self.texts.append(values)

    def _keep(self, present: np.ndarray, rng: np.random.Generator | None) -> None:
        self.sample.append(present)
        self.sampled += len(present)
        if self.sampled > MEDIAN_SAMPLE:  # thin the kept values to a uniform sample
            kept = np.concatenate(self.sample)
            rng = rng or np.random.default_rng(0)
            self.sample = [rng.choice(kept, MEDIAN_SAMPLE, replace=False)]
            self.sampled = MEDIAN_SAMPLE

    def fill_value(self) -> float:
        """What a missing number becomes: the training mean, median, or the configured constant."""
        if self.spec.impute == "constant" or not self.count:
            return float(self.spec.fill_value)
        if self.spec.impute == "median":
            return float(np.median(np.concatenate(self.sample)))
        return self.mean

    def normalization(self) -> tuple[float, float]:
        """(mean, variance) of the imputed training column; a constant column gets variance 1."""
        fill = self.fill_value()
        n = self.count + self.missing
        if not n:
            return 0.0, 1.0
        mean = (self.mean * self.count + fill * self.missing) / n
        m2 = self.m2 + self.count * (self.mean - mean) ** 2 + self.missing * (fill - mean) ** 2
        variance = m2 / n
        return mean, variance if variance > 0 else 1.0

    def vocabulary(self) -> list[Any]:
        """The training values, most frequent first (ties by value), at most `max_categories`."""
        order = sorted(self.counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
        limit = self.spec.max_categories
        kept = [v for v, _ in (order[:limit] if limit else order)]
        return [str(v) for v in kept] if self.dtype == "string" else [int(v) for v in kept]

    def info(self) -> dict[str, Any]:
        """What serving needs to know about the column: type, raw dtype, and the vocabulary when unseen values are refused."""
        entry: dict[str, Any] = {"type": self.spec.type, "dtype": self.dtype}
        if self.spec.type == "categorical":
            entry["unseen"] = self.spec.unseen
            if self.spec.unseen == "error":
                entry["vocabulary"] = self.vocabulary()
        return entry


def column_stats(feature_types: dict[str, Any], x_train: dict[str, np.ndarray]) -> dict[str, ColumnStats]:
    """Statistics of in-memory training columns (one chunk each)."""
    out = {}
    for column, spec in feature_types.items():
        stats = ColumnStats(spec)
        stats.add(x_train[column])
        out[column] = stats
    return out
