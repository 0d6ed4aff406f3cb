"""The targets of `expkit reproduce`: `experiments/targets.yaml` read and checked, a target's accept band, the
selection of targets to run (with the targets they must beat: expkit/reproduce_margin.py), and the data files a
target still lacks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from expkit.config.locate import PACKAGE_DIR
from expkit.errors import ExpkitError, suggestion


class Beats(BaseModel):
    """`beats:` of a target: the other target and the least margin between the two means."""

    model_config = ConfigDict(extra="forbid")
    target: str
    by: Annotated[float, Field(ge=0)]
    higher_is_better: bool = True


class Band(BaseModel):
    """The interval a result must land in; either end may be open."""

    model_config = ConfigDict(extra="forbid")
    min: float | None = None
    max: float | None = None

    def contains(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def __str__(self) -> str:
        if self.min is not None and self.max is not None:
            return f"{self.min:g}–{self.max:g}"
        return f"≥ {self.min:g}" if self.min is not None else f"≤ {self.max:g}"


class Target(BaseModel):
    """One entry of targets.yaml. Keys not listed here (free-text notes) are kept and ignored."""

    model_config = ConfigDict(extra="allow")
    name: str = ""
    preset: str | None = None
    overrides: list[str] = []
    metric: str
    book: float | str | None = None
    accept: Band
    needs: list[str] = []
    quick: bool = False
    # at least this many seeds, whatever --repeats says (a claim about every seed needs several)
    repeats: int = Field(default=1, ge=1)
    # the mean must beat another target's mean by a margin (expkit/reproduce_margin.py)
    beats: Beats | None = None
    band: str | None = None  # how the band was chosen
    source: str | None = None
    data: str | None = None

    @property
    def preset_name(self) -> str:
        return self.preset or self.name


def targets_file() -> Path:
    """experiments/targets.yaml of a source checkout, else the copy shipped inside the package."""
    for candidate in (PACKAGE_DIR.parent / "experiments" / "targets.yaml", PACKAGE_DIR / "experiments" / "targets.yaml"):
        if candidate.is_file():
            return candidate
    raise ExpkitError("experiments/targets.yaml not found", hint="pass --targets PATH")


def load_targets(path: Path) -> dict[str, Target]:
    """Every target in `path`, checked; a bad entry is an error naming it."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ExpkitError(f"cannot read {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ExpkitError(f"{path} must map target names to entries")
    targets = {}
    for name, entry in raw.items():
        try:
            target = Target.model_validate({**(entry or {}), "name": str(name)})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ExpkitError(f"{path}: target {name}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        if target.accept.min is None and target.accept.max is None:
            raise ExpkitError(f"{path}: target {name}: accept needs min, max or both")
        targets[str(name)] = target
    check_references(targets, path)
    return targets


def select_targets(targets: dict[str, Target], names: list[str], quick: bool) -> list[Target]:
    """The named targets (all, or the quick ones, when none is named)."""
    unknown = [n for n in names if n not in targets]
    if unknown:
        raise ExpkitError(f"no reproduction target '{unknown[0]}'", hint=suggestion(unknown[0], targets, noun="targets"))
    chosen = [targets[n] for n in names] if names else list(targets.values())
    return with_compared([t for t in chosen if t.quick] if quick else chosen, targets)


def missing_data(target: Target, data_dir: Path | None) -> list[str]:
    """The entries of `needs` found neither in `data_dir` nor in the Keras cache."""
    keras_cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "datasets"
    places = [p for p in (data_dir, keras_cache) if p is not None]
    return [need for need in target.needs if not any((place / need).exists() for place in places)]


def check_references(targets: dict[str, Target], path: Path) -> None:
    """Every `beats.target` names another target of the same file."""
    for name, target in targets.items():
        other = target.beats.target if target.beats else None
        if other is not None and (other not in targets or other == name):
            raise ExpkitError(
                f"{path}: target {name}: beats.target: no other target '{other}'",
                hint=suggestion(other, [t for t in targets if t != name], noun="targets"),
            )


def with_compared(selected: list[Target], targets: dict[str, Target]) -> list[Target]:
    """`selected`, plus (just before it) each target a selected one must beat, when it is not selected already."""
    names = {t.name for t in selected}
    out: list[Target] = []
    for target in selected:
        other = target.beats.target if target.beats else None
        if other is not None and other not in names:
            out.append(targets[other])
            names.add(other)
        out.append(target)
    return out
