"""What a reproduction measured: one run per seed (`Attempt`) and a target's runs together (`TargetResult`): their mean,
sample standard deviation and verdict against the band."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from expkit.reproduce_targets import Target


@dataclass
class Attempt:
    """One run of a target."""

    seed: int
    value: float | None = None
    run_id: str | None = None
    wall_s: float = 0.0
    error: str | None = None


@dataclass
class TargetResult:
    target: Target
    attempts: list[Attempt] = field(default_factory=list)
    skipped: str | None = None  # "needs mnist.npz"
    margin_failure: str | None = None  # set by apply_margins when `beats` is not met

    @property
    def values(self) -> list[float]:
        return [a.value for a in self.attempts if a.value is not None]

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    @property
    def verdict(self) -> str:
        if self.skipped:
            return f"skipped: {self.skipped}"
        errors = [a.error for a in self.attempts if a.error]
        if errors:
            return f"error: {errors[0]}"
        if self.margin_failure:
            return f"FAIL: {self.margin_failure}"
        return "pass" if self.mean is not None and self.target.accept.contains(self.mean) else "FAIL"

    @property
    def failed(self) -> bool:
        return not self.skipped and self.verdict != "pass"

    def result_text(self) -> str:
        if self.mean is None:
            return "-"
        return f"{self.mean:.4f}" + (f" ± {self.std:.4f} (n={len(self.values)})" if len(self.values) > 1 else "")

    def wall_text(self) -> str:
        walls = [a.wall_s for a in self.attempts]
        return f"{statistics.fmean(walls):.0f} s" + (f" × {len(walls)}" if len(walls) > 1 else "") if walls else "-"
