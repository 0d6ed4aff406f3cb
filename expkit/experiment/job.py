"""One job: a composed, checked config run through its protocol, tested once, and recorded through its `Recorder`.

    Job(config, resolved, context, recorder).run() -> TaskResult

`expkit.app` builds the `JobContext` (from Hydra) and the recorder (MLflow, or none), and calls `run`.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from expkit.config.params import run_params
from expkit.config.schema import ExperimentConfig
from expkit.errors import ExpkitError
from expkit.experiment.context import JobContext, run_name
from expkit.experiment.recorder import NullRecorder, Recorder, RecorderUnreachable
from expkit.selection.objective import Objective, TaskResult, TrialPruned


class Job:
    """Scores `config` with its protocol, tests once, and records it all; `run` returns the objective and the run id."""

    def __init__(self, config: ExperimentConfig, resolved: dict[str, Any], context: JobContext, recorder: Recorder | None = None) -> None:
        self.config = config
        self.resolved = resolved
        self.context = context
        self.recorder: Recorder = recorder if recorder is not None else NullRecorder()
        self.objective = Objective.from_config(config.objective)
        self.output_dir = Path(config.paths.output_dir)
        self.name = run_name(config.name, context.overrides, context.swept)

    def run(self) -> TaskResult:
        from expkit.backend import import_tensorflow

        context, recorder, output_dir = self.context, self.recorder, self.output_dir
        resume = context.action == "resume"
        output_dir.mkdir(parents=True, exist_ok=True)
        state, drift, run_id = self.resume_point() if resume else (None, [], None)
        if not resume:
            (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(self.resolved))
            (output_dir / "overrides.yaml").write_text(OmegaConf.to_yaml(context.overrides))
        # One param per knob: keys written as interpolations of others (`derived`) are left out (expkit.config.params).
        knobs = run_params(self.resolved, context.derived)
        params = None if resume else knobs
        # A job that shares the cores with other jobs (joblib, clusters) has no idle core for the opener: it imports
        # TensorFlow first, by which time a joblib sweep's parent run (created while the workers start) exists.
        overlap = context.threads is None and recorder.background_start
        try:
            if overlap:
                recorder.start(self.name, self.tags(drift), run_id=run_id, params=params, overlap=True)
            import_tensorflow()  # without its oneDNN notice; a new run is meanwhile created by another process
            if not overlap:
                recorder.start(self.name, self.tags(drift), run_id=run_id, params=params, overlap=False)
        except KeyboardInterrupt:
            with contextlib.suppress(Exception):  # the opener runs in its own session: Ctrl-C left it to finish the run
                recorder.end("KILLED")
            print("aborted before training started", file=sys.stderr)
            sys.exit(130)
        from expkit.training.resume import Interrupted  # imports Keras

        recorder.ready(context.label)
        if resume:
            recorder.catch_up(state.history if state is not None else None, state.epoch if state is not None else -1)

        status = "FAILED"
        try:
            result = self.train(state)
            status = "FINISHED"
            return result
        except RecorderUnreachable as gone:
            status = ""  # the run stays open on the server; nothing is lost: it is all in the run folder
            print(f"{gone}\ndeliver the run when the server is back with: expkit resume {output_dir}", file=sys.stderr)
            sys.exit(gone.exit_code)
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
            recorder.set_tags({"optuna.state": "PRUNED", "pruned": str(pruned)[:5000]})
            return TaskResult(score=None, state="PRUNED", run_id=recorder.run_id, reason=str(pruned))
        except Exception as error:
            failure = str(error) if isinstance(error, ExpkitError) else f"{error.__class__.__name__}: {error}"
            recorder.set_tags({"failure": failure[:5000]})
            raise
        finally:
            if status:
                recorder.end(status)

    def train(self, state: Any) -> TaskResult:
        """Run the protocol, record its score and results, print the summary."""
        from expkit.experiment.protocols import Context, run_protocol
        from expkit.experiment.results import run_record, write_model_files
        from expkit.training.progress import epoch_lines, resolve_verbose
        from expkit.training.resume import StopRequest

        context, recorder, objective = self.context, self.recorder, self.objective
        job = context.label
        verbose = self.config.trainer.verbose
        trainer = self.config.trainer.model_copy(update={"verbose": resolve_verbose(verbose, bool(job))})
        config = self.config.model_copy(update={"trainer": trainer})  # a copy: the validated config is never changed in place
        hooks = context.epoch_hooks()
        if job and verbose == "auto":
            hooks.append(lambda _objective: epoch_lines(job, config.trainer.epochs))
        with StopRequest() as stop:
            protocol = Context(
                config,
                self.output_dir,
                objective,
                recorder,
                stop,
                state,
                selecting=context.multirun,
                epoch_hooks=hooks,
                tensorboard_dir=recorder.tensorboard_dir,
            )
            result = run_protocol(protocol)
        outcome = result.outcome  # None: the protocol scored the config without a tested model (k-fold)
        recorder.settle()
        # Selection's figures first; test metrics are logged after the score is fixed, and never read back.
        recorder.log_metrics({**({"objective": result.score} if result.score is not None else {}), **result.summary})
        if outcome is not None:
            diagram = write_model_files(outcome.model, self.output_dir)
            knobs = run_params(self.resolved, context.derived)  # TensorBoard's HParams
            recorder.log_result(run_record(config, outcome, result.splits, self.output_dir, self.name, context.overrides, knobs, diagram))
        summary = final_summary(outcome, self.output_dir, recorder)
        if result.score is not None:
            summary = f"objective {objective.metric} ({objective.at}): {result.score:.4f}\n{summary}"
        print("\n".join(f"[{job}] {line}" for line in summary.splitlines()) if job else summary, flush=True)
        return TaskResult(score=result.score, state="COMPLETE", run_id=recorder.run_id)

    def tags(self, drift: list[str]) -> dict[str, str]:
        """The run's tags: where it came from and the objective it is scored by."""
        objective, context = self.objective, self.context
        tags = {
            "preset": context.preset,
            "overrides": " ".join(context.overrides) or "(none)",
            "output_dir": str(self.config.paths.output_dir),
            "objective.metric": objective.metric,
            "objective.mode": objective.mode,
            "objective.at": objective.at,
            "protocol": self.config.protocol,
        }
        if context.trial is not None:
            tags["optuna.trial"] = str(context.trial["trial"])
            tags["optuna.study"] = context.trial["study"]
        if drift:
            tags["resume.config_drift"] = "; ".join(drift)[:5000]
        return tags

    def resume_point(self) -> tuple[Any, list[str], str | None]:
        """expkit resume: (the saved training state or None, the config drift, the run id), after checking the config."""
        config, output_dir = self.config, self.output_dir
        if config.protocol != "holdout":
            raise ExpkitError(f"resume continues holdout runs only; this run uses protocol {config.protocol}", key="protocol")
        drift = config_drift(output_dir, self.resolved)
        if drift and not self.context.force:
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
        return state, drift, run_id


def final_summary(outcome: Any, output_dir: Path, recorder: Recorder) -> str:
    """The lines a finished run ends with: test metrics, final epoch metrics, run id, folder, where to look."""
    lines = [f"{key}: {value:.4f}" for key, value in outcome.test_metrics.items()] if outcome else []
    final = {k: v[-1] for k, v in outcome.history.items() if v and k not in ("learning_rate", "epoch_time_s")} if outcome else {}
    if final:
        lines.append("final epoch: " + ", ".join(f"{k} {v:.4f}" for k, v in final.items()))
    if recorder.run_id is not None:
        lines.append(f"MLflow run: {recorder.run_id}")
        lines.append(f"view: {recorder.ui_link()}")
    lines.append(f"outputs: {output_dir}")
    return "\n".join(lines)


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
