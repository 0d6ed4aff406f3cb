"""expkit's Optuna sweeper for Hydra (`hydra/sweeper=optuna`): a thin adapter over expkit.selection.study.

Asks the study for a batch of trials, launches them with the configured launcher (basic, joblib, ...), and tells
the study each job's outcome (the objective, PRUNED or FAIL). Jobs report per-epoch values to the same study
through its shared storage, so pruners can stop them. Re-running the same command continues the study.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


class OptunaSweeper(Sweeper):
    """Search with Optuna 4: samplers TPE/random/grid/CMA-ES, median/hyperband pruning, resumable studies."""

    def __init__(
        self,
        sampler: str,
        pruner: str,
        pruner_startup_trials: int,
        pruner_warmup_epochs: int,
        n_trials: int,
        n_jobs: int | None,
        seed: int | None,
        storage: str | None,
        study_name: str | None,
        params: dict[str, str] | None,
    ) -> None:
        self.sampler, self.pruner = sampler, pruner
        self.startup, self.warmup = pruner_startup_trials, pruner_warmup_epochs
        self.n_trials, self.n_jobs, self.seed = n_trials, n_jobs, seed
        self.storage, self.study_name = storage, study_name
        self.params = dict(params or {})
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        import optuna

        from expkit.selection.objective import Objective, SweepAborted, TaskResult
        from expkit.selection.pruning import pruner_spec
        from expkit.selection.study import PARENT_ATTR, grid_values, make_pruner, make_sampler, open_storage, search_space, storage_url
        from expkit.tracking.parent import handoff

        assert self.config is not None
        config = self.config
        space, fixed = search_space([*(f"{k}={v}" for k, v in self.params.items()), *arguments])
        if not space:
            print("error: the optuna sweeper has nothing to search (give hydra.sweeper.params or key=interval(...))", file=sys.stderr)
            raise SweepAborted("nothing to search")
        objective = Objective.from_config(OmegaConf.select(config, "objective"))
        url = storage_url(self.storage, str(config.hydra.sweep.dir))
        name = self.study_name or str(config.name)
        epochs = int(OmegaConf.select(config, "trainer.epochs", default=1) or 1)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            study_name=name,
            storage=open_storage(url),
            sampler=make_sampler(self.sampler, space, self.seed),
            pruner=make_pruner(self.pruner, startup_trials=self.startup, warmup_epochs=self.warmup, max_epochs=epochs),
            direction="minimize" if objective.mode == "min" else "maximize",
            load_if_exists=True,
        )
        parent = handoff().parent_run_id
        if parent and not study.user_attrs.get(PARENT_ATTR):
            study.set_user_attr(PARENT_ATTR, parent)
        requeue_interrupted(study)
        print(f"optuna study '{name}' in {url}: {len(study.trials)} earlier trial(s)", file=sys.stderr)

        launcher_jobs = OmegaConf.select(config, "hydra.launcher.n_jobs", default=None)
        batch_size = self.n_jobs or (int(launcher_jobs) if launcher_jobs and int(launcher_jobs) > 0 else 1)
        pruner = pruner_spec(self.pruner, self.startup, self.warmup, epochs)
        fail_fast = bool(OmegaConf.select(config, "sweep.fail_fast", default=False))
        n_trials = self.n_trials
        if self.sampler == "grid":
            n_trials = min(n_trials, math.prod(len(v) for v in grid_values(space).values()))
        while (remaining := n_trials - len(done_trials(study))) > 0:
            trials = [study.ask(space) for _ in range(min(batch_size, remaining))]
            batch = [
                [
                    *fixed,
                    *(f"{k}={format_value(v)}" for k, v in trial.params.items()),
                    f"++hydra.job.env_set.OPTUNA_TRIAL='{url}|{name}|{trial.number}|{pruner}'",
                ]
                for trial in trials
            ]
            returns = self.launcher.launch(batch, initial_job_idx=trials[0].number)
            for trial, job in zip(trials, returns, strict=True):
                result = job.return_value if job.status == JobStatus.COMPLETED else None
                if isinstance(result, TaskResult) and result.state == "COMPLETE" and result.score is not None:
                    tell(study, trial, values=result.score)
                elif isinstance(result, TaskResult) and result.state == "PRUNED":
                    tell(study, trial, state=optuna.trial.TrialState.PRUNED)
                else:
                    reason = result.reason if isinstance(result, TaskResult) else "the job raised an exception"
                    trial.set_user_attr("failure", reason[:1000] or "failed")
                    tell(study, trial, state=optuna.trial.TrialState.FAIL)
                    if fail_fast:
                        raise SweepAborted(f"sweep.fail_fast: trial {trial.number} failed")
        print_summary(study, objective, handoff().parent_run_id)
        return study


def tell(study: Any, trial: Any, **outcome: Any) -> None:
    """study.tell, tolerating the grid sampler's stop() once the grid is exhausted (the trial is stored either way)."""
    try:
        study.tell(trial, **outcome)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise


def format_value(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def done_trials(study: Any) -> list[Any]:
    """Trials that count toward n_trials: completed, pruned, or failed by their job (not interrupted ones)."""
    from optuna.trial import TrialState

    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (t.state == TrialState.FAIL and "failure" in t.user_attrs)
    ]


def requeue_interrupted(study: Any) -> None:
    """Trials left RUNNING by an interrupted search: mark them failed (interrupted) and queue their parameters again."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)  # no "failure" attribute: it does not count toward n_trials
        study.enqueue_trial(trial.params)
        print(f"trial {trial.number} was interrupted: its parameters run again", file=sys.stderr)


def print_summary(study: Any, objective: Any, parent: str | None) -> None:
    """Trials by state, the best trial's overrides and objective, and the MLflow parent run."""
    from collections import Counter

    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state.name for t in trials if t.state.name != "FAIL" or "failure" in t.user_attrs)
    interrupted = sum(1 for t in trials if t.state.name == "FAIL" and "failure" not in t.user_attrs)
    print(f"\nOptuna study '{study.study_name}': {len(trials)} trial(s)")
    for state in ("COMPLETE", "PRUNED", "FAIL", "RUNNING"):
        if states.get(state):
            print(f"  {state.lower():<11} {states[state]}")
    if interrupted:
        print(f"  {'interrupted':<11} {interrupted} (run again)")
    try:
        best = study.best_trial
    except ValueError:
        best = None
    if best is not None:
        print(f"  best trial {best.number}: {objective.metric} = {best.value:.4f} ({objective.mode})")
        print("  overrides: " + " ".join(f"{k}={format_value(v)}" for k, v in best.params.items()))
    if parent:
        print(f"  MLflow parent run: {parent}  (expkit runs compare --sweep {parent[:8]})")
