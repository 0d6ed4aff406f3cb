"""The Hydra application: compose -> validate -> run -> return the objective.

`expkit train` hands its arguments to `main`, so multirun, sweepers, launchers and
`--cfg` behave exactly as in any Hydra app.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hydra
from omegaconf import DictConfig, OmegaConf

from expkit.backend import import_tensorflow
from expkit.config import validate_config
from expkit.config.locate import conf_dir
from expkit.config.params import derived_keys, run_params
from expkit.config.resolvers import register_resolvers
from expkit.config.schema import ExperimentConfig
from expkit.errors import ExpkitError
from expkit.preflight import preflight
from expkit.selection.objective import Objective, SweepAborted, TaskResult, TrialPruned
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


#: Short names for long config keys in run names (the UI's name column is narrow); other keys go by their last part.
NAME_ABBREVIATIONS = {
    "learning_rate": "lr",
    "initial_learning_rate": "lr0",
    "batch_size": "bs",
    "weight_decay": "wd",
    "max_train_samples": "train_n",
    "max_test_samples": "test_n",
    "steps_per_execution": "spe",
}


def run_name(name: str, overrides: list[str], swept: set[str] | None = None) -> str:
    """The preset name plus a short summary of the overrides, e.g. 'mnist_dense lr=1e-3'.

    In a sweep, the values the sweep varies come first (`swept`: the overrides that differ between jobs),
    so the UI's narrow name column shows what tells the children apart; long keys are abbreviated
    (`NAME_ABBREVIATIONS`: `learning_rate=0.001` -> `lr=0.001`).
    """
    first: list[str] = []
    rest: list[str] = []
    for override in overrides:
        key, _, value = override.partition("=")
        if not override.startswith(("+experiment=", "hydra", "experiment=")):
            last = key.lstrip("+~").split(".")[-1]
            short = f"{NAME_ABBREVIATIONS.get(last, last)}={value}" if value else key
            (first if swept and override in swept else rest).append(short)
    words = [*first, name, *rest]
    while len(" ".join(words)) > 96 and len(words) > 1:  # cut between words, never inside a value such as holdout=1000
        words = words[:-1]
    return (" ".join(words) + (" ..." if len(words) < len([*first, name, *rest]) else "")).strip()


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


def config_drift(run_dir: Path, resolved: dict[str, Any]) -> list[str]:
    """Lines `key: stored -> now` for every config value that changed since the run started."""
    from expkit.config.params import flatten

    stored = flatten(OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml")))  # type: ignore[arg-type]
    now = flatten(resolved)
    # A key the run's (older) expkit did not have is no change while it holds its default, e.g. trainer.precision.
    added_at_default = {k for k in set(now) - set(stored) if schema_default(k) == now[k]}
    return [
        f"{k}: {stored.get(k, '<absent>')!r} -> {now.get(k, '<absent>')!r}"
        for k in sorted(set(stored) | set(now))
        if stored.get(k) != now.get(k) and k not in added_at_default
    ]


def schema_default(key: str) -> Any:
    """The schema's default for a dotted config key (`trainer.precision` -> None), or a sentinel when it has none."""
    from pydantic import BaseModel

    missing = object()
    node: Any = ExperimentConfig
    field = None
    for part in key.split("."):
        if not (isinstance(node, type) and issubclass(node, BaseModel)) or part not in node.model_fields:
            return missing
        field = node.model_fields[part]
        node = field.annotation
    if field is None or field.is_required():
        return missing
    return field.get_default(call_default_factory=True)


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


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_experiment(
    config: ExperimentConfig,
    resolved: dict[str, Any],
    overrides: list[str],
    invocation: Invocation,
    *,
    selecting: bool = False,
    epoch_hooks: list[Any] | None = None,
    derived: list[str] | None = None,
) -> TaskResult:
    """Score the config with its protocol, test once, and track it all; returns the objective and the run id."""
    from expkit.selection.protocols import Context, run_protocol
    from expkit.training.progress import epoch_lines, resolve_verbose

    resume = invocation.action == "resume"
    objective = Objective.from_config(config.objective)
    output_dir = Path(config.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    state, drift, run_id = None, [], None
    if resume:
        if config.protocol != "holdout":
            raise ExpkitError(f"resume continues holdout runs only; this run uses protocol {config.protocol}", key="protocol")
        drift = config_drift(output_dir, resolved)
        if drift and not invocation.force:
            raise ExpkitError(
                "the config changed since this run started:\n    " + "\n    ".join(drift),
                hint="undo the change, or pass --force to resume with the new config (the drift is recorded as a tag)",
            )
        from expkit.training.resume import TrainingState  # imports Keras

        state = TrainingState.load(output_dir / "checkpoints" / "resume")
        run_id = (output_dir / "run_id").read_text().strip() if (output_dir / "run_id").is_file() else None
        print(
            f"resuming {output_dir} " + (f"after epoch {state.epoch + 1}" if state else "from the start (no epoch was completed)"),
            file=sys.stderr,
        )
    else:
        (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
        (output_dir / "overrides.yaml").write_text(OmegaConf.to_yaml(overrides))

    name = run_name(config.name, overrides, swept_overrides(overrides))
    # One param per knob: keys written as interpolations of others (`derived`) are left out (expkit.config.params).
    knobs = run_params(resolved, derived or [])
    params = None if resume else knobs
    tracked = new_tracked_run(config) if config.tracking.enabled else None
    # A job that shares the cores with other jobs (joblib, clusters) has no idle core for the opener: it imports
    # TensorFlow first, by which time a joblib sweep's parent run (created while the workers start) exists.
    overlap = threads_per_job(config.trainer.cpus) is None
    try:
        if tracked is not None and overlap:
            start_tracking(tracked, config, name, overrides, run_id, drift, objective, params, overlap=True)
        import_tensorflow()  # without its oneDNN notice; a new run is meanwhile created by another process
        if tracked is not None and not overlap:
            start_tracking(tracked, config, name, overrides, run_id, drift, objective, params, overlap=False)
    except KeyboardInterrupt:
        if tracked is not None:
            with contextlib.suppress(Exception):  # the opener runs in its own session: Ctrl-C left it to finish the run
                tracked.end("KILLED")
        print("aborted before training started", file=sys.stderr)
        sys.exit(130)
    from expkit.tracking.outage import EXIT_STORE_UNREACHABLE, StoreUnreachable
    from expkit.training.resume import Interrupted, StopRequest  # imports Keras

    tb_dir = None
    if tracked is not None:
        from expkit.tracking.tensorboard import run_folder

        label = sweep_job_label(overrides)
        print(f"[{label}] " * bool(label) + f"MLflow run {tracked.run_id} in {tracked.uri}", file=sys.stderr)
        (output_dir / "run_id").write_text(tracked.run_id + "\n")
        tb_dir = run_folder(output_dir / "tensorboard", name, tracked.run_id)  # TensorBoard lists it by the MLflow run's name and id
        if resume:  # what an earlier attempt kept while its tracking server was unreachable (see expkit.tracking.outage)
            from expkit.tracking.outage import deliver_saved

            deliver_saved(tracked, output_dir)
        if state is not None:
            tracked.backfill(state.history, state.epoch)

    status = "FAILED"
    try:
        job = sweep_job_label(overrides)
        verbose = config.trainer.verbose
        config.trainer.verbose = resolve_verbose(verbose, bool(job))  # type: ignore[assignment]
        hooks = list(epoch_hooks or [])
        if job and verbose == "auto":
            hooks.append(lambda _objective: epoch_lines(job, config.trainer.epochs))
        with StopRequest() as stop:
            context = Context(
                config,
                output_dir,
                objective,
                tracked,
                stop,
                state,
                selecting=selecting or in_multirun(),
                epoch_hooks=hooks,
                tensorboard_dir=tb_dir,
            )
            result = run_protocol(context)
        outcome = result.outcome
        if tracked:
            from expkit.tracking.outage import settle

            settle(tracked, config.tracking.server_wait_s, output_dir)  # the epochs an outage held back; waits for the server
            # Selection's figures first; test metrics are logged after the score is fixed, and never read back.
            tracked.log_metrics({**({"objective": result.score} if result.score is not None else {}), **result.summary})
        if outcome is not None and config.protocol != "kfold":
            log_outcome(config, outcome, result.splits, output_dir, tracked, name, overrides, knobs, tb_dir)  # knobs: TensorBoard HParams
        status = "FINISHED"
        summary = final_summary(outcome if config.protocol != "kfold" else None, output_dir, tracked)
        if result.score is not None:
            summary = f"objective {objective.metric} ({objective.at}): {result.score:.4f}\n{summary}"
        print("\n".join(f"[{job}] {line}" for line in summary.splitlines()) if job else summary, flush=True)
        return TaskResult(score=result.score, state="COMPLETE", run_id=tracked.run_id if tracked else None)
    except StoreUnreachable as gone:
        status = ""  # the run stays open on the server; nothing is lost: it is all in the run folder
        print(f"{gone}\ndeliver the run when the server is back with: expkit resume {output_dir}", file=sys.stderr)
        sys.exit(EXIT_STORE_UNREACHABLE)
    except Interrupted as stopped:
        status = "KILLED"
        print(f"{stopped}; resume with: expkit resume {output_dir}", file=sys.stderr)
        sys.exit(128 + stopped.signum)
    except KeyboardInterrupt:
        status = "KILLED"
        print(f"aborted; resume from the last completed epoch with: expkit resume {output_dir}", file=sys.stderr)
        sys.exit(130)
    except TrialPruned as pruned:
        status = "KILLED"
        if tracked:
            tracked.set_tags({"optuna.state": "PRUNED", "pruned": str(pruned)[:5000]})
        return TaskResult(score=None, state="PRUNED", run_id=tracked.run_id if tracked else None, reason=str(pruned))
    except Exception as error:
        if tracked:
            tracked.set_tags(
                {"failure": f"{error.__class__.__name__}: {error}"[:5000] if not isinstance(error, ExpkitError) else str(error)[:5000]}
            )
        raise
    finally:
        if tracked and status:
            tracked.end(status)


def new_tracked_run(config: ExperimentConfig) -> Any:
    """The job's TrackedRun, not started yet."""
    from expkit.tracking.run import TrackedRun

    t = config.tracking
    return TrackedRun(uri=t.uri, root_dir=config.paths.root_dir, experiment_name=t.experiment_name, artifact_dir=t.artifact_dir)


def start_tracking(
    tracked: Any,
    config: ExperimentConfig,
    name: str,
    overrides: list[str],
    run_id: str | None,
    drift: list[str],
    objective: Objective,
    params: dict[str, Any] | None,
    *,
    overlap: bool,
) -> None:
    """Open (or reopen, on resume) this job's MLflow run, tagged with the objective it is scored by.

    With `overlap`, a new run is created in the background while TensorFlow is imported (see `TrackedRun.start`).
    """
    preset = next((o.split("=", 1)[1] for o in overrides if o.startswith(("+experiment=", "experiment="))), "default")
    tags = {
        "preset": preset,
        "overrides": " ".join(overrides) or "(none)",
        "output_dir": str(config.paths.output_dir),
        "objective.metric": objective.metric,
        "objective.mode": objective.mode,
        "objective.at": objective.at,
        "protocol": config.protocol,
    }
    from expkit.selection.pruning import current_trial

    trial = current_trial()
    if trial is not None:
        tags["optuna.trial"] = str(trial["trial"])
        tags["optuna.study"] = trial["study"]
    if drift:
        tags["resume.config_drift"] = "; ".join(drift)[:5000]
    tensorboard_base = Path(config.paths.output_dir) / "tensorboard"
    tracked.start(name, tags, run_id=run_id, params=params, tensorboard_base=tensorboard_base, overlap=overlap)


def log_outcome(
    config: ExperimentConfig,
    outcome: Any,
    splits: Any,
    output_dir: Path,
    tracked: Any,
    name: str,
    overrides: list[str],
    resolved: dict[str, Any],
    tb_dir: Path | None,
) -> None:
    """Model summary and diagram, then (tracked) the dataset, test metrics (reported, never chosen on), plots, models, run card."""
    from expkit.models.diagram import plot_architecture

    lines: list[str] = []
    outcome.model.summary(print_fn=lambda line, *a, **k: lines.append(line))
    (output_dir / "model_summary.txt").write_text("\n".join(lines) + "\n")
    diagram = plot_architecture(outcome.model, output_dir / "model.png")
    if not tracked:
        return
    from expkit.data.sources import data_origin

    seen = outcome.splits or splits  # named by input/output for graph models
    d = config.dataset
    if hasattr(splits, "sizes"):  # arrays (image folders stream, and log their classes instead)
        origin = data_origin(d.source, d.name, d.path, config.paths.data_dir) if d.name else d.source
        tracked.log_dataset(d.name or d.source, origin, splits.fingerprint, splits.sizes, splits.raw_x_example)
    if (output_dir / "classes.json").is_file():  # image folders: class names from folder names, skipped images
        classes = json.loads((output_dir / "classes.json").read_text())
        skipped = {"dataset.class_names": ",".join(classes["class_names"]), "dataset.skipped_images": len(classes["skipped_images"])}
        tracked.log_params({}, skipped)
        tracked.log_artifacts([output_dir / "classes.json"])
    tracked.log_artifacts([output_dir / "plots" / "augmented_samples.png"], artifact_path="plots")
    tracked.log_results(config, outcome, seen, output_dir, name, overrides)
    tracked.log_artifacts([output_dir / "activations"])  # ActivationLogger's per-epoch npz (and PNGs), when configured
    if diagram:
        tracked.log_artifacts([diagram])
    if d.source == "playground":
        tracked.log_decision_boundary(outcome.model, d, config.seed, output_dir / "plots", outcome.test_metrics.get("test_accuracy"))
    if tb_dir is not None and config.tracking.tensorboard.enabled:
        tracked.log_hparams(tb_dir, resolved, outcome, name)


def final_summary(outcome: Any, output_dir: Path, tracked: Any) -> str:
    """The lines a finished run ends with: test metrics, final epoch metrics, run id, folder, where to look."""
    lines = [f"{key}: {value:.4f}" for key, value in outcome.test_metrics.items()] if outcome else []
    final = {k: v[-1] for k, v in outcome.history.items() if v and k not in ("learning_rate", "epoch_time_s")} if outcome else {}
    if final:
        lines.append("final epoch: " + ", ".join(f"{k} {v:.4f}" for k, v in final.items()))
    if tracked:
        lines.append(f"MLflow run: {tracked.run_id}")
        lines.append(f"view: {tracked.ui_link()}")
    lines.append(f"outputs: {output_dir}")
    return "\n".join(lines)


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
            config = preflight(validate_config(cfg))  # files, sources, split sizes: before any run or run folder
            check_strategy(config.trainer.strategy)
            if self.invocation.action == "validate":
                print(f"config OK: {config.name}")
                if self.invocation.build:
                    build_only(config)
                return None
            resolved = OmegaConf.to_container(cfg, resolve=True)
            if config.trainer.threads is None:
                config.trainer.threads = threads_per_job(config.trainer.cpus)
            from expkit.selection.pruning import epoch_hooks

            derived = derived_keys(cfg)  # keys written as interpolations: logged once, under the key they refer to
            return run_experiment(config, resolved, overrides, self.invocation, epoch_hooks=epoch_hooks(), derived=derived)  # type: ignore[arg-type]
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
    """Run the Hydra app with `args` as its command line."""
    sys.argv = ["expkit", *args]
    hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")(HydraTask(invocation))()
