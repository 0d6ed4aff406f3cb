"""A Hydra callback that makes a multirun one MLflow run tree: a parent run, one child per job.

The parent's best child is chosen by each child's `objective` metric (validation only), in the direction the
objective defines; test metrics are copied for reading, never compared. The parent always ends.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from expkit.backend import hidden
from expkit.errors import ExpkitError
from expkit.selection.objective import Objective, SweepAborted
from expkit.tracking.store import PARENT_RUN_ENV, PARENT_RUN_FILE_ENV, SWEEP_OVERRIDES_ENV, ensure_experiment, publish_parent, tracking_uri


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


#: The parent run's tracking URI, for closing it from the CLI when a sweep stops early.
PARENT_URI_ENV = "EXPKIT_PARENT_RUN_URI"


def end_parent(status: str, reason: str) -> None:
    """Close the running sweep's parent run (if it is still open) with `status`, tagged with the reason."""
    parent_id, uri = os.environ.pop(PARENT_RUN_ENV, None), os.environ.pop(PARENT_URI_ENV, None)
    if not parent_id or not uri:
        return
    import mlflow

    client = mlflow.MlflowClient(uri)
    if client.get_run(parent_id).info.status == "RUNNING":
        client.set_tag(parent_id, "sweep.stopped", reason[:5000])
        client.set_terminated(parent_id, status)


def children(client: Any, parent_id: str) -> list[Any]:
    experiment_id = client.get_run(parent_id).info.experiment_id
    return client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", max_results=5000)


def best_child(runs: list[Any], objective: Objective) -> Any | None:
    """The FINISHED child with the best `objective` metric; test metrics play no part."""
    finished = [r for r in runs if r.info.status == "FINISHED"]
    ranked = objective.rank([(r, r.data.metrics.get("objective")) for r in finished])
    return ranked[0] if ranked and "objective" in ranked[0].data.metrics else None


def summarize_parent(client: Any, parent_id: str, objective: Objective) -> dict[str, Any]:
    """Tag the parent with the objective, its job counts by state and the best child; returns those figures."""
    runs = children(client, parent_id)
    states = {"FINISHED": 0, "FAILED": 0, "KILLED": 0, "RUNNING": 0}
    pruned = 0
    for r in runs:
        if r.data.tags.get("optuna.state") == "PRUNED":
            pruned += 1
        else:
            states[r.info.status] = states.get(r.info.status, 0) + 1
    tags = {
        "sweep.num_jobs": str(len(runs)),
        "sweep.objective.metric": objective.metric,
        "sweep.objective.mode": objective.mode,
        "sweep.objective.at": objective.at,
        **{f"sweep.num_{k.lower()}": str(v) for k, v in states.items() if k != "RUNNING"},
        "sweep.num_pruned": str(pruned),
    }
    best = best_child(runs, objective)
    if best is not None:
        tags["sweep.best_run_id"] = best.info.run_id
        tags["sweep.best_overrides"] = best.data.tags.get("overrides", "")
        client.log_metric(parent_id, "best/objective", best.data.metrics["objective"])  # a chart section of its own
        for key, value in best.data.metrics.items():
            if key.startswith(("test_", "val_")):  # reported for reading; the choice above used `objective` only
                client.log_metric(parent_id, f"best/{key}", value)
        show_best_in_table(client, client.get_run(parent_id).info.experiment_id)
    for key, value in tags.items():
        client.set_tag(parent_id, key, value)
    return {"runs": runs, "states": states, "pruned": pruned, "best": best}


def show_best_in_table(client: Any, experiment_id: str) -> None:
    """Add the `best/objective` column to expkit's runs-table view, so a sweep's parent row shows its best score."""
    from expkit.tracking.store import TABLE_VIEW_TAG, table_view

    current = client.get_experiment(experiment_id).tags.get(TABLE_VIEW_TAG)
    client.set_experiment_tag(experiment_id, TABLE_VIEW_TAG, table_view(current, ["best/objective"], []))


def retire_interrupted(client: Any, parent_id: str) -> None:
    """Children cut off by an interrupted search (not pruned, not finished): their trial runs again with the same
    parameters, so they are closed KILLED, tagged, and soft-deleted (restorable with `mlflow runs restore`)."""
    for run in children(client, parent_id):
        if run.info.status in ("RUNNING", "KILLED") and run.data.tags.get("optuna.state") != "PRUNED":
            client.set_tag(run.info.run_id, "optuna.state", "INTERRUPTED")
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "KILLED")
            client.delete_run(run.info.run_id)


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
        os.environ[SWEEP_OVERRIDES_ENV] = "\n".join(config.hydra.overrides.task)  # before the workers start: they name runs by it
        if not jobs_start_at_once(config):
            self.open_parent(config)
            return
        path = Path(str(config.hydra.sweep.dir)) / PARENT_RUN_FILE
        path.unlink(missing_ok=True)  # a re-run into the same folder must not read the last sweep's parent
        os.environ[PARENT_RUN_FILE_ENV] = str(path)

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
        os.environ.pop(PARENT_RUN_FILE_ENV, None)
        if self.error is not None:
            raise self.error

    def open_parent(self, config: DictConfig) -> None:
        """Create the sweep's parent run (or reopen a resumed search's) and put its id in this process's environment."""
        import mlflow

        self.uri = tracking_uri(OmegaConf.select(config, "tracking.uri"), str(config.paths.root_dir))
        # Creating the experiment here creates a fresh SQLite schema once, before parallel jobs race on it.
        try:
            experiment_id = ensure_experiment(self.uri, str(config.tracking.experiment_name), str(config.tracking.artifact_dir))
        except ExpkitError as error:
            raise SweepStoreError(error) from None
        client = mlflow.MlflowClient(self.uri)
        from expkit.selection.study import previous_parent

        resumed = previous_parent(config)
        if resumed:  # a re-run of an Optuna search continues its study, and its parent run
            client.update_run(resumed, status="RUNNING")
            self.parent_id = resumed
            retire_interrupted(client, resumed)
        else:
            objective = Objective.from_config(OmegaConf.select(config, "objective"))
            overrides = list(config.hydra.overrides.task)
            run = client.create_run(
                experiment_id,
                run_name=f"{config.name} sweep",
                tags={
                    "expkit.sweep": "parent",
                    "sweep.overrides": " ".join(overrides),
                    "sweep.dir": str(config.hydra.sweep.dir),
                    "sweep.objective.metric": objective.metric,
                    "sweep.objective.mode": objective.mode,
                },
            )
            self.parent_id = run.info.run_id
        os.environ[PARENT_RUN_ENV] = self.parent_id
        os.environ[PARENT_URI_ENV] = self.uri
        print(f"sweep parent run {self.parent_id} in {self.uri}", file=sys.stderr)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ.pop(SWEEP_OVERRIDES_ENV, None)
        self.wait_for_parent()
        Path(str(config.hydra.sweep.dir), PARENT_RUN_FILE).unlink(missing_ok=True)
        if not self.parent_id:
            return
        import mlflow

        client = mlflow.MlflowClient(self.uri)
        objective = Objective.from_config(OmegaConf.select(config, "objective"))
        figures = summarize_parent(client, self.parent_id, objective)
        runs, failed = figures["runs"], figures["states"]["FAILED"]
        limit = OmegaConf.select(config, "sweep.max_failure_rate", default=None)
        too_many = limit is not None and runs and failed / len(runs) > float(limit)
        client.set_terminated(self.parent_id, "FAILED" if too_many or (runs and failed == len(runs)) else "FINISHED")
        os.environ.pop(PARENT_RUN_ENV, None)
        os.environ.pop(PARENT_URI_ENV, None)
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
