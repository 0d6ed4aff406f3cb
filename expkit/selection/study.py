"""The Optuna side of a search: search-space syntax -> distributions, the study's storage, samplers and pruners.

The search-space syntax is hydra-optuna-sweeper's: `choice(a,b)`, `a,b`, `range(1,5)`, `interval(0.1,1)`,
`tag(log, interval(1e-4,1e-1))`. Optuna is imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from expkit.errors import ExpkitError

SAMPLERS = ("tpe", "random", "grid", "cmaes")
PRUNERS = ("none", "median", "hyperband")
#: The study's user attribute holding the MLflow parent run, so a resumed search continues it.
PARENT_ATTR = "mlflow_parent_run_id"


def distribution(override: Any) -> Any:
    """An Optuna distribution for one parsed sweep override (hydra's Override)."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value = override.value()
    key = override.get_key_element()
    log = "log" in getattr(value, "tags", set())
    if isinstance(value, ChoiceSweep):
        choices = [v for v in value.list]
        if any(isinstance(c, (dict, list)) for c in choices):
            raise ExpkitError("choice() of lists or dicts cannot be searched", key=key)
        return CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step or 1
        values = list(override.sweep_iterator())
        if not values:
            raise ExpkitError(f"range({start},{stop},{step}) is empty", key=key)
        if all(isinstance(v, int) for v in (start, stop, step)):
            return IntDistribution(int(values[0]), int(values[-1]), step=int(step), log=log and step == 1)
        return FloatDistribution(float(values[0]), float(values[-1]), step=float(step))
    if isinstance(value, IntervalSweep):
        low, high = value.start, value.end
        if isinstance(low, int) and isinstance(high, int) and not log:
            return IntDistribution(low, high)
        if log and low <= 0:
            raise ExpkitError(f"tag(log, interval({low},{high})) needs a positive lower bound", key=key)
        return FloatDistribution(float(low), float(high), log=log)
    raise ExpkitError(f"'{override.input_line}' is not a search space", key=key, hint="use choice(...), range(...) or interval(...)")


def search_space(overrides: list[str]) -> tuple[dict[str, Any], list[str]]:
    """({key: distribution}, fixed overrides) from command-line and hydra.sweeper.params overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    space: dict[str, Any] = {}
    fixed: list[str] = []
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution(override)
        else:
            fixed.append(override.input_line or "")
    return space, fixed


def grid_values(space: dict[str, Any]) -> dict[str, list[Any]]:
    """The grid sampler's search space: every parameter must be a choice or a range."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    grid: dict[str, list[Any]] = {}
    for key, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            grid[key] = list(dist.choices)
        elif isinstance(dist, IntDistribution):
            grid[key] = list(range(dist.low, dist.high + 1, dist.step))
        elif isinstance(dist, FloatDistribution) and dist.step:
            count = round((dist.high - dist.low) / dist.step)
            grid[key] = [dist.low + i * dist.step for i in range(count + 1)]
        else:
            raise ExpkitError("the grid sampler needs choice(...) or range(...) for every parameter", key=key, hint="or use sampler=tpe")
    return grid


def make_sampler(name: str, space: dict[str, Any], seed: int | None) -> Any:
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler(grid_values(space), seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    raise ExpkitError(f"unknown sampler '{name}'", key="hydra.sweeper.sampler", hint=f"one of: {', '.join(SAMPLERS)}")


def make_pruner(name: str | None, *, startup_trials: int, warmup_epochs: int, max_epochs: int) -> Any:
    import optuna

    name = (name or "none").lower()
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(max_epochs, 1))
    raise ExpkitError(f"unknown pruner '{name}'", key="hydra.sweeper.pruner", hint=f"one of: {', '.join(PRUNERS)}")


def storage_url(storage: str | None, sweep_dir: str) -> str:
    """`journal:<sweep dir>/optuna.journal` by default; a path ending in .journal, or an RDB URL (sqlite:///, postgresql://)."""
    if not storage:
        Path(sweep_dir).mkdir(parents=True, exist_ok=True)
        return f"journal:{Path(sweep_dir).resolve() / 'optuna.journal'}"
    if "://" in storage or storage.startswith("journal:"):
        return storage
    return f"journal:{Path(storage).expanduser().resolve()}"


def open_storage(url: str) -> Any:
    """An Optuna storage that several processes share: a journal file (journal:PATH) or an RDB URL."""
    import optuna

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    return optuna.storages.RDBStorage(url)


def stored_parent(url: str, study_name: str) -> str | None:
    """The MLflow parent run id a previous run of this search recorded, if the study exists."""
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(url))
    except KeyError:
        return None
    parent = study.user_attrs.get(PARENT_ATTR)
    return str(parent) if parent else None


def previous_parent(config: Any) -> str | None:
    """For a multirun on expkit's Optuna sweeper whose study already exists: the MLflow parent run to continue."""
    from omegaconf import OmegaConf

    from expkit.config.overrides import SEARCH_SWEEPER

    sweeper = OmegaConf.select(config, "hydra.sweeper")
    if sweeper is None or sweeper.get("_target_") != SEARCH_SWEEPER:
        return None
    url = storage_url(sweeper.get("storage"), str(config.hydra.sweep.dir))
    return stored_parent(url, str(sweeper.get("study_name") or config.name))
