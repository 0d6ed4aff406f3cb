"""The Hydra application: compose -> validate -> run -> return the objective.

`expkit train` hands its arguments to `main`, so multirun, sweepers, launchers and
`--cfg` behave exactly as in any Hydra app.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hydra
from omegaconf import DictConfig, OmegaConf

from expkit.config import validate_config
from expkit.config.locate import conf_dir
from expkit.config.resolvers import register_resolvers
from expkit.config.schema import ExperimentConfig
from expkit.errors import ExpkitError

register_resolvers()

# What the task does with a composed config: "train", "resume" or "validate". Set by the CLI.
ACTION = "train"
# Resume even though the config changed (expkit resume --force).
FORCE = False
# expkit validate --build: also build the model and print its summary.
BUILD = False
# True once Hydra has composed a config and called the task (an earlier exit is a config error).
TASK_STARTED = False


def report(error: ExpkitError) -> None:
    """Print one clear error line (plus hint) to stderr."""
    print(f"error: {error}", file=sys.stderr)


def job_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def threads_per_job() -> int | None:
    """Under the joblib launcher, share the cores between parallel jobs (TF would give each job all of them)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    launcher = OmegaConf.select(HydraConfig.get(), "launcher", default=None)
    if launcher is None or "joblib" not in str(launcher.get("_target_", "")):
        return None
    cores = os.cpu_count() or 1
    jobs = int(launcher.get("n_jobs", -1) or -1)
    jobs = cores if jobs < 1 else jobs
    return max(1, cores // jobs)


def run_name(name: str, overrides: list[str]) -> str:
    """The preset name plus a short summary of the overrides, e.g. 'mnist_dense lr=1e-3'."""
    shown = []
    for override in overrides:
        key, _, value = override.partition("=")
        if not override.startswith(("+experiment=", "hydra", "experiment=")):
            shown.append(f"{key.lstrip('+~').split('.')[-1]}={value}" if value else key)
    text = " ".join([name, *shown]).strip()
    return text if len(text) <= 100 else text[:97] + "..."


def config_drift(run_dir: Path, resolved: dict[str, Any]) -> list[str]:
    """Lines `key: stored -> now` for every config value that changed since the run started."""
    from expkit.tracking.store import flatten

    stored = flatten(OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml")))  # type: ignore[arg-type]
    now = flatten(resolved)
    return [
        f"{k}: {stored.get(k, '<absent>')!r} -> {now.get(k, '<absent>')!r}"
        for k in sorted(set(stored) | set(now))
        if stored.get(k) != now.get(k)
    ]


def head_losses(config: ExperimentConfig) -> dict[str, Any]:
    """{output name: loss}; a sequential model has one unnamed head ("")."""
    if config.model.is_graph:
        return {name: spec["loss"] for name, spec in (config.model.outputs or {}).items()}
    return {"": config.model.loss}


def build_only(config: ExperimentConfig) -> None:
    """expkit validate --build: load the data, build the model, print its summary and parameter count."""
    from expkit.data import load_splits
    from expkit.training.runner import build_configured_model, name_splits

    splits = name_splits(config.model, load_splits(config.dataset, data_dir=config.paths.data_dir, seed=config.seed))
    model = build_configured_model(config, splits)
    model.summary()
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    print(f"parameters: {model.count_params():,} ({trainable:,} trainable)")


def run_experiment(config: ExperimentConfig, resolved: dict[str, Any], overrides: list[str], *, resume: bool = False) -> float:
    """Train, evaluate, checkpoint and track one experiment; returns the objective (lower is better)."""
    from expkit.data import load_splits
    from expkit.training.resume import Interrupted, StopRequest, TrainingState
    from expkit.training.runner import train_and_evaluate

    output_dir = Path(config.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    state, drift, run_id = None, [], None
    if resume:
        drift = config_drift(output_dir, resolved)
        if drift and not FORCE:
            raise ExpkitError(
                "the config changed since this run started:\n    " + "\n    ".join(drift),
                hint="undo the change, or pass --force to resume with the new config (the drift is recorded as a tag)",
            )
        state = TrainingState.load(output_dir / "checkpoints" / "resume")
        run_id = (output_dir / "run_id").read_text().strip() if (output_dir / "run_id").is_file() else None
        print(
            f"resuming {output_dir} " + (f"after epoch {state.epoch + 1}" if state else "from the start (no epoch was completed)"),
            file=sys.stderr,
        )
    else:
        (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
        (output_dir / "overrides.yaml").write_text(OmegaConf.to_yaml(overrides))

    tracked = None
    if config.tracking.enabled:
        from expkit.tracking.run import TrackedRun

        t = config.tracking
        tracked = TrackedRun(uri=t.uri, root_dir=config.paths.root_dir, experiment_name=t.experiment_name, artifact_dir=t.artifact_dir)
        preset = next((o.split("=", 1)[1] for o in overrides if o.startswith(("+experiment=", "experiment="))), "default")
        tags = {
            "preset": preset,
            "overrides": " ".join(overrides) or "(none)",
            "output_dir": str(output_dir),
            "tensorboard_dir": str(output_dir / "tensorboard"),
        }
        if drift:
            tags["resume.config_drift"] = "; ".join(drift)[:5000]
        run_id = tracked.start(run_name(config.name, overrides), tags, run_id=run_id)
        (output_dir / "run_id").write_text(run_id + "\n")
        print(f"MLflow run {run_id} in {tracked.uri}", file=sys.stderr)
        if state is not None:
            tracked.backfill(state.history, state.epoch)
        elif not resume:
            tracked.log_params(resolved, {})

    status = "FAILED"
    try:
        with StopRequest() as stop:
            splits = load_splits(config.dataset, data_dir=config.paths.data_dir, seed=config.seed)
            if tracked:
                tracked.set_tags({"dataset.fingerprint": splits.fingerprint})
            outcome = train_and_evaluate(config, splits, output_dir, [tracked.callback()] if tracked else [], stop=stop, resume_from=state)
        from expkit.data.pipeline import take
        from expkit.models.diagram import plot_architecture

        lines: list[str] = []
        outcome.model.summary(print_fn=lambda line, *a, **k: lines.append(line))
        (output_dir / "model_summary.txt").write_text("\n".join(lines) + "\n")
        diagram = plot_architecture(outcome.model, output_dir / "model.png")
        seen = outcome.splits or splits  # named by input/output for graph models
        if tracked:
            tracked.log_params({}, {"model.num_params": outcome.model.count_params()})
            tracked.log_metrics(outcome.test_metrics)
            files = ("config.yaml", "overrides.yaml", "metrics.json", "model_summary.txt")
            tracked.log_artifacts([output_dir / n for n in files] + ([diagram] if diagram else []))
            tracked.log_plots(
                outcome.history, head_losses(config), outcome.model, seen, output_dir / "plots", config.tracking.plot_smoothing
            )
            if config.tracking.log_model:
                tracked.log_model(outcome.model, take(seen.x_test, slice(5)))
        status = "FINISHED"
        for key, value in outcome.test_metrics.items():
            print(f"{key}: {value:.4f}")
        print(f"outputs: {output_dir}")
        history = outcome.history
        return float((history.get("val_loss") or history["loss"])[-1])
    except Interrupted as stopped:
        status = "KILLED"
        print(f"{stopped}; resume with: expkit resume {output_dir}", file=sys.stderr)
        sys.exit(128 + stopped.signum)
    except KeyboardInterrupt:
        status = "KILLED"
        print(f"aborted; resume from the last completed epoch with: expkit resume {output_dir}", file=sys.stderr)
        sys.exit(130)
    except ExpkitError as error:
        if tracked:
            tracked.set_tags({"failure": str(error)[:5000]})
        raise
    finally:
        if tracked:
            tracked.end(status)


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def main(cfg: DictConfig) -> float | None:
    """The Hydra task function."""
    global TASK_STARTED
    TASK_STARTED = True
    try:
        config = validate_config(cfg)
        if ACTION == "validate":
            print(f"config OK: {config.name}")
            if BUILD:
                build_only(config)
            return None
        resolved = OmegaConf.to_container(cfg, resolve=True)
        if config.trainer.threads is None:
            config.trainer.threads = threads_per_job()
        overrides = [o for o in job_overrides() if not o.startswith("hydra.run.dir=")]
        return run_experiment(config, resolved, overrides, resume=ACTION == "resume")  # type: ignore[arg-type]
    except ExpkitError as error:
        report(error)
        sys.exit(2)
