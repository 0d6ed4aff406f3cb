"""The sweeper's config, registered as `hydra/sweeper=optuna`.

No `from __future__ import annotations` here: Hydra's plugin scan imports this module outside sys.modules,
and dataclasses then cannot read string annotations.
"""

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.expkit_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    # tpe, random, grid or cmaes.
    sampler: str = "tpe"
    # none, median or hyperband: stop trials whose per-epoch objective lags.
    pruner: str = "none"
    # Median pruner: trials that always finish first, and epochs never pruned.
    pruner_startup_trials: int = 2
    pruner_warmup_epochs: int = 1
    # Total trials in the study (a re-run tops it up to this number).
    n_trials: int = 20
    # Trials per launch batch (null: the launcher's n_jobs, else 1).
    n_jobs: int | None = None
    seed: int | None = None
    # null: a journal file in the sweep dir; or a .journal path, or an RDB URL (sqlite:///..., postgresql://...).
    storage: str | None = None
    study_name: str | None = None
    # The search space, in hydra-optuna-sweeper's syntax: {key: "interval(0.1, 1)"}.
    params: dict[str, str] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="expkit")
