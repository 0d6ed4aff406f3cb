"""The Hydra application: compose -> validate -> run -> return the objective.

`expkit train` hands its arguments to `main`, so multirun, sweepers, launchers and
`--cfg` behave exactly as in any Hydra app.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hydra
from omegaconf import DictConfig, OmegaConf

from expkit.config import validate_config
from expkit.config.locate import conf_dir
from expkit.config.params import derived_keys
from expkit.config.resolvers import register_resolvers
from expkit.config.schema import ExperimentConfig
from expkit.errors import ExpkitError
from expkit.experiment.context import JobContext, run_name
from expkit.experiment.job import Job
from expkit.experiment.recorder import NullRecorder, Recorder
from expkit.preflight import preflight
from expkit.selection.objective import SweepAborted, TaskResult
from expkit.tracking.store import ParentRunUnavailable
from expkit.training.strategy import check_strategy

register_resolvers()


@dataclass
class Invocation:
    """What the CLI asked for, handed explicitly to the Hydra task (no module globals)."""

    # What the task does with a composed config: "train", "resume", "validate" or "show".
    action: str = "train"
    # Resume even though the config changed (expkit resume --force).
    force: bool = False
    # expkit validate --build: also build the model and print its summary.
    build: bool = False
    # Set once Hydra has composed a config and called the task (an earlier exit is a config error).
    task_started: bool = False


def report(error: ExpkitError) -> None:
    """Print one clear error line (plus hint) to stderr."""
    print(f"error: {error}", file=sys.stderr)


def job_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def threads_per_job(cpus: int = 1) -> int | None:
    """Under the joblib launcher, share the cores between parallel jobs (TF would give each job all of them).

    Under a cluster launcher (Ray, submitit), use the `cpus` the job asked for (trainer.cpus).
    """
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    launcher = OmegaConf.select(HydraConfig.get(), "launcher", default=None)
    target = "" if launcher is None else str(launcher.get("_target_", ""))
    if "ray_launcher" in target or "submitit_launcher" in target:
        return cpus
    if "joblib" not in target:
        return None
    cores = os.cpu_count() or 1
    jobs = int(launcher.get("n_jobs", -1) or -1)
    jobs = cores if jobs < 1 else jobs
    return max(1, cores // jobs)


def sweep_job_label(overrides: list[str]) -> str:
    """'job 1: seed=2' in a multirun job (its number and swept overrides), '' in a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return ""
    swept = swept_overrides(overrides)
    shown = [o for o in overrides if o in swept] if swept else overrides
    return f"job {HydraConfig.get().job.num}" + (f": {' '.join(shown)}" if shown else "")


def swept_overrides(overrides: list[str]) -> set[str]:
    """In a sweep job: the overrides not given to the whole sweep on the command line (the swept values)."""
    from expkit.tracking.parent import handoff

    common = handoff().overrides
    if common is None:
        return set()
    given = {_spelled(o) for o in common}
    # A launcher may re-spell a value it passes on (joblib: `flag=false` becomes `flag=False`).
    return {o for o in overrides if _spelled(o) not in given}


def _spelled(override: str) -> str:
    key, sep, value = override.partition("=")
    return f"{key}{sep}{value.lower()}" if value.lower() in ("true", "false") else override


def build_only(config: ExperimentConfig) -> None:
    """expkit validate --build: load the data, build the model, print its summary and parameter count."""
    from expkit.data import load_splits
    from expkit.data.images import ImageSplits
    from expkit.training.runner import build_configured_model, name_splits

    splits = load_splits(config.dataset, data_dir=config.paths.data_dir, seed=config.seed)
    if not isinstance(splits, ImageSplits):
        splits = name_splits(config.model, splits)
    model = build_configured_model(config, splits)
    model.summary()
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    print(f"parameters: {model.count_params():,} ({trainable:,} trainable)")


def hydra_config_dirs() -> list[Path]:
    """The --config-dir folders of this Hydra app (their presets may be extended): handed to validation."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    sources = HydraConfig.get().runtime.config_sources
    return [Path(s.path) for s in sources if s.provider == "command-line" and s.schema == "file"]


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def optuna_trial() -> dict[str, Any] | None:
    """{storage, study, trial, pruner} when this job is a trial of expkit's Optuna sweeper (its hydra.job.env_set), else None."""
    from hydra.core.hydra_config import HydraConfig

    from expkit.selection.pruning import TRIAL_KEY, parse_trial

    if not HydraConfig.initialized():
        return None
    return parse_trial(OmegaConf.select(HydraConfig.get(), f"job.env_set.{TRIAL_KEY}", default=None))  # type: ignore[arg-type]


def job_context(overrides: list[str], invocation: Invocation, cpus: int, derived: list[str]) -> JobContext:
    """What Hydra knows about this job, gathered once: nothing below the app reads HydraConfig or the Optuna trial."""
    return JobContext(
        overrides=overrides,
        swept=swept_overrides(overrides),
        label=sweep_job_label(overrides),
        multirun=in_multirun(),
        trial=optuna_trial(),
        threads=threads_per_job(cpus),
        action=invocation.action,
        force=invocation.force,
        derived=derived,
    )


def new_recorder(config: ExperimentConfig) -> Recorder:
    """The job's recorder, not started yet: an MLflow run, or none (tracking=none)."""
    if not config.tracking.enabled:
        return NullRecorder()
    from expkit.tracking.recorder import MlflowRecorder

    return MlflowRecorder.from_config(config)


def record_failed_job(cfg: DictConfig, overrides: list[str], reason: str) -> None:
    """A sweep job that failed before its run started (an invalid config): a FAILED child run that says why."""
    if not OmegaConf.select(cfg, "tracking.enabled", default=False):
        return
    from expkit.tracking.run import TrackedRun

    try:
        tracked = TrackedRun(
            uri=OmegaConf.select(cfg, "tracking.uri", default=None),
            root_dir=str(OmegaConf.select(cfg, "paths.root_dir", default=".")),
            experiment_name=str(OmegaConf.select(cfg, "tracking.experiment_name")),
            artifact_dir=str(OmegaConf.select(cfg, "tracking.artifact_dir")),
        )
        name = str(OmegaConf.select(cfg, "name", default="job", throw_on_resolution_failure=False))
        tracked.start(run_name(name, overrides), {"overrides": " ".join(overrides) or "(none)", "failure": reason[:5000]})
        tracked.end("FAILED")
    except ParentRunUnavailable:  # the sweep has no parent run to record it under; the launching process says why
        pass
    except Exception as exc:  # the store itself is broken: the failure is still reported on stderr
        print(f"warning: could not record the failed job in MLflow: {exc}", file=sys.stderr)


class HydraTask:
    """The Hydra task function: compose -> validate -> run the protocol -> return the objective.

    In a multirun, a failing job is recorded (FAILED child run with the reason) and the sweep goes on.
    """

    def __init__(self, invocation: Invocation) -> None:
        self.invocation = invocation

    def __call__(self, cfg: DictConfig) -> TaskResult | None:
        self.invocation.task_started = True
        multirun = in_multirun()
        overrides = [o for o in job_overrides() if not o.startswith("hydra.run.dir=")]
        try:
            config = preflight(validate_config(cfg, hydra_config_dirs()))  # files, sources, split sizes: before any run or run folder
            check_strategy(config.trainer.strategy)
            if self.invocation.action == "validate":
                print(f"config OK: {config.name}")
                if self.invocation.build:
                    build_only(config)
                return None
            resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
            derived = derived_keys(cfg)  # keys written as interpolations: logged once, under the key they refer to
            context = job_context(overrides, self.invocation, config.trainer.cpus, derived)
            if config.trainer.threads is None:  # a copy: the validated config is never changed in place
                config = config.model_copy(update={"trainer": config.trainer.model_copy(update={"threads": context.threads})})
            return Job(config, resolved, context, new_recorder(config)).run()
        except ParentRunUnavailable as error:  # reported once, by the launching process, when the sweep ends
            return TaskResult(score=None, state="FAIL", reason=str(error))
        except ExpkitError as error:
            report(error)
            if not multirun:
                sys.exit(2)
            return self.failed(cfg, overrides, str(error), started="config" in locals())
        except Exception as error:
            if not multirun:
                raise
            import traceback

            traceback.print_exc()
            return self.failed(cfg, overrides, f"{error.__class__.__name__}: {error}", started="config" in locals())

    def failed(self, cfg: DictConfig, overrides: list[str], reason: str, *, started: bool) -> TaskResult:
        """Record a failed sweep job; stop the sweep when sweep.fail_fast is on."""
        if not started:
            record_failed_job(cfg, overrides, reason)
        print(f"job failed: {' '.join(overrides)}: {reason.splitlines()[0]}", file=sys.stderr)
        if OmegaConf.select(cfg, "sweep.fail_fast", default=False):
            raise SweepAborted(f"sweep.fail_fast: stopping after a failed job ({' '.join(overrides)}): {reason.splitlines()[0]}")
        return TaskResult(score=None, state="FAIL", reason=reason)


def run(args: list[str], invocation: Invocation) -> None:
    """Run the Hydra app with `args` as its command line (Hydra's main reads `sys.argv`: set for the call, then restored)."""
    saved = sys.argv
    sys.argv = ["expkit", *args]
    try:
        hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")(HydraTask(invocation))()
    finally:
        sys.argv = saved
