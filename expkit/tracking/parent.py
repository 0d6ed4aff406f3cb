"""One parent run: the MLflow run that a sweep, `expkit reproduce`, or a k-fold or retrain job nests its runs under.

`ParentRun` creates a parent (or adopts one that exists), tags it, creates children, logs the best child by the
objective, and ends with a status. `child_run` is the one way a nested run is created. A sweep's parent uses it through
`ParentRun.child`. A k-fold fold or retrain phase calls it too (`tracking.run.ChildRun`), with the training run as parent.
The best child is chosen by each child's `objective` metric (validation only). Test metrics are copied for reading,
never compared. MLflow is imported only when a run is created: this module is cheap to import.

Jobs in other processes (joblib, Ray, SLURM workers, `expkit train` under `expkit reproduce`) learn their parent from one
environment variable, `EXPKIT_SWEEP`: a small JSON `Handoff` (see `hand_off` and `handoff`).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expkit.tracking.store import TABLE_VIEW_TAG, await_parent, table_view

if TYPE_CHECKING:
    import mlflow

    from expkit.selection.objective import Objective

#: The tag that nests a run under its parent in MLflow (mlflow.utils.mlflow_tags.MLFLOW_PARENT_RUN_ID).
PARENT_TAG = "mlflow.parentRunId"


#: The one environment variable that tells a job which sweep (or reproduction) it belongs to: a `Handoff` as JSON.
SWEEP_ENV = "EXPKIT_SWEEP"
#: Held while the hand-off is changed: a joblib sweep's parent is handed over from the thread that creates it.
_HANDING = threading.Lock()


@dataclass(frozen=True)
class Handoff:
    """What the launching process hands its jobs (all optional; a job outside any sweep sees none of it)."""

    parent_run_id: str | None = None  #: the parent run, when it exists before the jobs start
    parent_file: str | None = None  #: where a joblib sweep publishes the parent's id once made (`store.publish_parent`)
    uri: str | None = None  #: the parent's store (the launching process closes an interrupted sweep's parent through it)
    overrides: tuple[str, ...] | None = None  #: the whole sweep's overrides, so a job can tell its swept values apart

    def to_json(self) -> str:
        return json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if v is not None})

    @classmethod
    def from_json(cls, text: str | None) -> Handoff:
        try:
            fields = json.loads(text) if text else {}
        except ValueError:
            fields = {}
        if not isinstance(fields, dict):
            return cls()
        overrides = fields.get("overrides")
        return cls(
            parent_run_id=fields.get("parent_run_id") or None,
            parent_file=fields.get("parent_file") or None,
            uri=fields.get("uri") or None,
            overrides=None if overrides is None else tuple(str(o) for o in overrides),
        )


def handoff() -> Handoff:
    """This process's hand-off (`EXPKIT_SWEEP`); empty outside a sweep or reproduction."""
    return Handoff.from_json(os.environ.get(SWEEP_ENV))


def hand_off(**changes: Any) -> Handoff:
    """Change fields of this process's hand-off (None removes one), for the jobs started after this; returns the hand-off
    as it was. With no field left, `EXPKIT_SWEEP` is unset."""
    with _HANDING:
        before = handoff()
        fields: dict[str, Any] = {k: tuple(v) if k == "overrides" and v is not None else v for k, v in changes.items()}
        updated = replace(before, **fields)
        if updated == Handoff():
            os.environ.pop(SWEEP_ENV, None)
        else:
            os.environ[SWEEP_ENV] = updated.to_json()
        return before


def handed_parent() -> str | None:
    """The parent run a new run in this job nests under: the handed-over id, else (a joblib sweep's job, started while the
    parent was being created) the id published in the sweep folder, waited for (`store.await_parent`)."""
    given = handoff()
    if given.parent_run_id is None and given.parent_file:
        return await_parent(Path(given.parent_file))
    return given.parent_run_id


def child_run(client: mlflow.MlflowClient, parent_id: str, run_name: str, tags: dict[str, str], experiment_id: str | None = None) -> str:
    """Create a RUNNING run named `run_name` nested under `parent_id` (in the parent's experiment); returns its id."""
    experiment_id = experiment_id or client.get_run(parent_id).info.experiment_id
    run = client.create_run(experiment_id, run_name=run_name, tags={**tags, PARENT_TAG: parent_id})
    return str(run.info.run_id)


def best_child(runs: list[Any], objective: Objective) -> Any | None:
    """The FINISHED child with the best `objective` metric; test metrics play no part."""
    finished = [r for r in runs if r.info.status == "FINISHED"]
    ranked = objective.rank([(r, r.data.metrics.get("objective")) for r in finished])
    return ranked[0] if ranked and "objective" in ranked[0].data.metrics else None


class ParentRun:
    """A parent run in an MLflow store, written through the client only (any thread, no active run)."""

    def __init__(self, client: mlflow.MlflowClient, run_id: str, experiment_id: str | None = None) -> None:
        self.client, self.run_id = client, run_id
        self._experiment_id = experiment_id

    @classmethod
    def create(cls, uri: str, experiment_id: str, run_name: str, tags: dict[str, str]) -> ParentRun:
        """A new RUNNING parent run in experiment `experiment_id` (see `store.ensure_experiment`)."""
        import mlflow

        client = mlflow.MlflowClient(uri)
        run = client.create_run(experiment_id, run_name=run_name, tags=tags)
        return cls(client, run.info.run_id, experiment_id)

    @classmethod
    def adopt(cls, uri: str, run_id: str, *, reopen: bool = False) -> ParentRun:
        """The existing parent run `run_id`; with `reopen`, RUNNING again (a resumed search continues its parent)."""
        import mlflow

        parent = cls(mlflow.MlflowClient(uri), run_id)
        if reopen:
            parent.client.update_run(run_id, status="RUNNING")
        return parent

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = str(self.client.get_run(self.run_id).info.experiment_id)
        return self._experiment_id

    @property
    def status(self) -> str:
        return str(self.client.get_run(self.run_id).info.status)

    def tag(self, tags: dict[str, str], run_id: str | None = None) -> None:
        """Tag the parent, or one of its children (`run_id`): e.g. a child created by another process."""
        for key, value in tags.items():
            self.client.set_tag(run_id or self.run_id, key, value)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.client.log_metric(self.run_id, key, value)

    def log_artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def child(self, name: str, tags: dict[str, str]) -> str:
        """Create a RUNNING child run under this parent; returns its id."""
        return child_run(self.client, self.run_id, name, tags, self.experiment_id)

    def children(self) -> list[Any]:
        """Every run nested under this parent (in any state)."""
        return list(self.client.search_runs([self.experiment_id], filter_string=f"tags.{PARENT_TAG} = '{self.run_id}'", max_results=5000))

    def log_best(self, objective: Objective) -> dict[str, Any]:
        """Tag the parent with the objective, its children's counts by state and the best child; log the best child's
        objective as `best/objective` (and its val_/test_ metrics, for reading). Returns the runs, counts and best."""
        runs = self.children()
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
            self.log_metrics({"best/objective": best.data.metrics["objective"]})  # a chart section of its own
            # reported for reading; the choice above used `objective` only
            self.log_metrics({f"best/{k}": v for k, v in best.data.metrics.items() if k.startswith(("test_", "val_"))})
            self.show_best_in_table()
        self.tag(tags)
        return {"runs": runs, "states": states, "pruned": pruned, "best": best}

    def show_best_in_table(self) -> None:
        """Add the `best/objective` column to expkit's runs-table view, so the parent's row shows its best score."""
        current = self.client.get_experiment(self.experiment_id).tags.get(TABLE_VIEW_TAG)
        self.client.set_experiment_tag(self.experiment_id, TABLE_VIEW_TAG, table_view(current, ["best/objective"], []))

    def end(self, status: str) -> None:
        """Close the parent as FINISHED, FAILED or KILLED."""
        self.client.set_terminated(self.run_id, status)

    def end_if_running(self, status: str, tags: dict[str, str]) -> None:
        """Close the parent with `status` and `tags` (why it stopped) unless it has ended already."""
        if self.status == "RUNNING":
            self.tag(tags)
            self.end(status)
