"""A Hydra callback that makes a multirun one MLflow run tree: a parent run (`tracking.parent.ParentRun`), one child per job.

The parent's best child is chosen by each child's `objective` metric (validation only), in the direction the
objective defines; test metrics are copied for reading, never compared. The parent always ends.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from expkit.backend import hidden
from expkit.errors import ExpkitError
from expkit.selection.objective import Objective, SweepAborted
from expkit.tracking.parent import ParentRun, hand_off
from expkit.tracking.store import ensure_experiment, publish_parent, tracking_uri


def summary_table(children: list[Any], parent_id: str, best_id: str | None, objective: Objective | None = None) -> str:
    """One row per job, best first by `objective` (then the jobs that did not finish, in job order): name (cut
    between words), status, the objective, the final val_loss when the objective is another metric, test metrics
    (for reading only), run id. Then the parent run id."""
    from expkit.tracking.ranking import key_metrics, metric_of
    from expkit.tracking.table import clip, format_value, render_table

    objective = objective or Objective.create()
    shown = ["objective"] if any("objective" in r.data.metrics for r in children) else []
    if objective.metric != "val_loss" or not shown:
        shown += ["val_loss"] if any("val_loss" in r.data.metrics for r in children) else []
    metrics = shown + key_metrics(children)
    in_job_order = sorted(children, key=lambda r: r.info.start_time or 0)
    finished = [r for r in in_job_order if r.info.status == "FINISHED"]
    ordered = objective.rank([(r, metric_of(r, "objective")) for r in finished]) + [r for r in in_job_order if r not in finished]
    rows = [
        [
            ("* " if r.info.run_id == best_id else "  ") + clip(r.info.run_name or "", 60),
            r.info.status,
            *(format_value(metric_of(r, m)) for m in metrics),
            r.info.run_id,
        ]
        for r in ordered
    ]
    headers = [f"objective ({objective.metric})" if m == "objective" else m for m in metrics]
    table = render_table(["run", "status", *headers, "run id"], rows, [False, False, *([True] * len(metrics)), False])
    best = "  (* = sweep.best_run_id)" if best_id else ""
    return f"\nsweep summary: {len(children)} job(s), parent run {parent_id}{best}; best first by {objective.describe()}\n{table}"


def end_parent(status: str, reason: str) -> None:
    """Close the running sweep's parent run (if it is still open) with `status`, tagged with the reason."""
    given = hand_off(parent_run_id=None, uri=None)
    if given.parent_run_id and given.uri:
        ParentRun.adopt(given.uri, given.parent_run_id).end_if_running(status, {"sweep.stopped": reason[:5000]})


def retire_interrupted(parent: ParentRun) -> None:
    """Children cut off by an interrupted search (not pruned, not finished): their trial runs again with the same
    parameters, so they are closed KILLED, tagged, and soft-deleted (restorable with `mlflow runs restore`)."""
    for run in parent.children():
        if run.info.status in ("RUNNING", "KILLED") and run.data.tags.get("optuna.state") != "PRUNED":
            parent.tag({"optuna.state": "INTERRUPTED"}, run.info.run_id)
            if run.info.status == "RUNNING":
                parent.client.set_terminated(run.info.run_id, "KILLED")
            parent.client.delete_run(run.info.run_id)


class SweepStoreError(SweepAborted):
    """The sweep's parent run could not be created (a bad tracking store): the CLI reports it once and exits 2."""

    exit_code = 2

    def __init__(self, cause: ExpkitError) -> None:
        super().__init__(str(cause))
        self.cause = cause


#: The thread creating a pool sweep's parent run, per callback (kept off the callback: Hydra pickles it into each job).
_OPENING: dict[int, threading.Thread] = {}
#: The name of the file, in the sweep folder, that carries the parent run's id to a pool sweep's jobs.
PARENT_RUN_FILE = ".parent_run.json"


def jobs_start_at_once(config: DictConfig) -> bool:
    """Whether the launcher starts jobs in worker processes straight away (joblib), not one at a time in this process."""
    return "joblib" in str(OmegaConf.select(config, "hydra.launcher._target_", default="") or "")


def finish_opening() -> None:
    """Wait for any parent run still being created (a sweep interrupted early must still close its parent)."""
    for thread in list(_OPENING.values()):
        thread.join()


def _not_joblib_settings(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Joblib.Parallel(")


def quiet_launcher_log() -> None:
    """Drop the joblib launcher's `Joblib.Parallel(n_jobs=2,backend=loky,...) is launching 2 jobs` line: joblib's own
    settings, which belong to no job. Its `Launching jobs` and `#N : overrides` lines stay."""
    log = logging.getLogger("hydra_plugins.hydra_joblib_launcher._core")
    if _not_joblib_settings not in log.filters:
        log.addFilter(_not_joblib_settings)


class SweepTrackingCallback(Callback):
    """Creates the store and a parent run for the sweep (in the launching process), closes it after.

    Under joblib, the parent run is created in a thread while the workers start (they import TensorFlow
    meanwhile, on the core this process would leave idle); each job reads the parent's id from a file in the
    sweep folder when it creates its own run (`store.await_parent`). Other launchers get the id before jobs start.
    """

    def __init__(self) -> None:
        self.parent_id: str | None = None
        self.uri = ""
        self.error: SweepStoreError | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        quiet_launcher_log()
        if not OmegaConf.select(config, "tracking.enabled", default=False):
            return
        hand_off(overrides=list(config.hydra.overrides.task))  # before the workers start: they name runs by it
        if not jobs_start_at_once(config):
            self.open_parent(config)
            return
        path = Path(str(config.hydra.sweep.dir)) / PARENT_RUN_FILE
        path.unlink(missing_ok=True)  # a re-run into the same folder must not read the last sweep's parent
        hand_off(parent_file=str(path))

        def open_and_publish() -> None:
            try:
                with hidden(("pandas",)):  # this process never needs it; MLflow would load it (0.3 s) while the workers start
                    import mlflow  # noqa: F401
                self.open_parent(config)
                publish_parent(path, self.parent_id)
            except SweepStoreError as error:
                self.error = error
                publish_parent(path, None, error.cause)
            except Exception as error:  # reported at the sweep's end; the jobs must not wait for a file that never comes
                self.error = SweepStoreError(ExpkitError(f"could not create the sweep's parent run: {error.__class__.__name__}: {error}"))
                publish_parent(path, None, self.error.cause)

        thread = threading.Thread(target=open_and_publish, name="expkit-sweep-parent")
        _OPENING[id(self)] = thread
        thread.start()

    def wait_for_parent(self) -> None:
        """Wait until a pool sweep's parent run is created (or failed); raise SweepStoreError if it failed."""
        thread = _OPENING.pop(id(self), None)
        if thread is not None:
            thread.join()
        hand_off(parent_file=None)
        if self.error is not None:
            raise self.error

    def open_parent(self, config: DictConfig) -> None:
        """Create the sweep's parent run (or reopen a resumed search's) and hand its id and store to the jobs (`EXPKIT_SWEEP`)."""
        self.uri = tracking_uri(OmegaConf.select(config, "tracking.uri"), str(config.paths.root_dir))
        # Creating the experiment here creates a fresh SQLite schema once, before parallel jobs race on it.
        try:
            experiment_id = ensure_experiment(self.uri, str(config.tracking.experiment_name), str(config.tracking.artifact_dir))
        except ExpkitError as error:
            raise SweepStoreError(error) from None
        from expkit.selection.study import previous_parent

        resumed = previous_parent(config)
        if resumed:  # a re-run of an Optuna search continues its study, and its parent run
            parent = ParentRun.adopt(self.uri, resumed, reopen=True)
            retire_interrupted(parent)
        else:
            objective = Objective.from_config(OmegaConf.select(config, "objective"))
            tags = {
                "expkit.sweep": "parent",
                "sweep.overrides": " ".join(config.hydra.overrides.task),
                "sweep.dir": str(config.hydra.sweep.dir),
                "sweep.objective.metric": objective.metric,
                "sweep.objective.mode": objective.mode,
            }
            parent = ParentRun.create(self.uri, experiment_id, f"{config.name} sweep", tags)
        self.parent_id = parent.run_id
        hand_off(parent_run_id=self.parent_id, uri=self.uri)
        print(f"sweep parent run {self.parent_id} in {self.uri}", file=sys.stderr)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        hand_off(overrides=None)
        self.wait_for_parent()
        Path(str(config.hydra.sweep.dir), PARENT_RUN_FILE).unlink(missing_ok=True)
        if not self.parent_id:
            return
        parent = ParentRun.adopt(self.uri, self.parent_id)
        objective = Objective.from_config(OmegaConf.select(config, "objective"))
        figures = parent.log_best(objective)
        runs, failed = figures["runs"], figures["states"]["FAILED"]
        limit = OmegaConf.select(config, "sweep.max_failure_rate", default=None)
        too_many = limit is not None and runs and failed / len(runs) > float(limit)
        parent.end("FAILED" if too_many or (runs and failed == len(runs)) else "FINISHED")
        hand_off(parent_run_id=None, uri=None)
        best = figures["best"]
        print(
            f"sweep {self.parent_id}: {len(runs)} job(s), {figures['states']['FINISHED']} finished, {failed} failed, "
            f"{figures['pruned']} pruned; best by {objective.metric} ({objective.mode}): "
            + (f"{best.data.metrics['objective']:.4f} ({best.data.tags.get('overrides', '')})" if best else "none"),
            file=sys.stderr,
        )
        print(summary_table(runs, self.parent_id, best.info.run_id if best else None, objective), flush=True)
        if too_many:
            raise SweepAborted(f"{failed} of {len(runs)} jobs failed, more than sweep.max_failure_rate={limit}")
        if runs and failed == len(runs):  # nothing to choose from: a script or CI must not read this as success
            raise SweepAborted(
                f"every job of the sweep failed ({failed} of {len(runs)}); the first error is printed above each `job failed` line"
            )
