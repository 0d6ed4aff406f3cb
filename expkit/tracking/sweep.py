"""A Hydra callback that makes a multirun one MLflow run tree: a parent run, one child per job."""

from __future__ import annotations

import os
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from expkit.tracking.store import PARENT_RUN_ENV, SWEEP_OVERRIDES_ENV, ensure_experiment, tracking_uri


def summary_table(children: list[Any], parent_id: str, best_id: str | None) -> str:
    """One row per job (name, status, final val_loss, test metrics, run id), then the parent run id."""
    from expkit.runs import format_value, key_metrics, metric_of, render_table

    metrics = [m for m in ("val_loss",) if any(m in r.data.metrics for r in children)] + key_metrics(children)
    ordered = sorted(children, key=lambda r: r.info.start_time or 0)
    rows = [
        [
            ("* " if r.info.run_id == best_id else "  ") + (r.info.run_name or "")[:60],
            r.info.status,
            *(format_value(metric_of(r, m)) for m in metrics),
            r.info.run_id,
        ]
        for r in ordered
    ]
    table = render_table(["run", "status", *metrics, "run id"], rows, [False, False, *([True] * len(metrics)), False])
    best = "  (* = sweep.best_run_id)" if best_id else ""
    return f"\nsweep summary: {len(children)} job(s), parent run {parent_id}{best}\n{table}"


class SweepTrackingCallback(Callback):
    """Creates the store and a parent run before jobs start (in the launching process), closes it after."""

    def __init__(self) -> None:
        self.parent_id: str | None = None
        self.uri = ""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not OmegaConf.select(config, "tracking.enabled", default=False):
            return
        import mlflow

        self.uri = tracking_uri(OmegaConf.select(config, "tracking.uri"), str(config.paths.root_dir))
        # Creating the experiment here creates a fresh SQLite schema once, before parallel jobs race on it.
        experiment_id = ensure_experiment(self.uri, str(config.tracking.experiment_name), str(config.tracking.artifact_dir))
        overrides = list(config.hydra.overrides.task)
        run = mlflow.MlflowClient(self.uri).create_run(
            experiment_id, run_name=f"{config.name} sweep", tags={"expkit.sweep": "parent", "sweep.overrides": " ".join(overrides)}
        )
        self.parent_id = run.info.run_id
        os.environ[PARENT_RUN_ENV] = self.parent_id
        os.environ[SWEEP_OVERRIDES_ENV] = "\n".join(overrides)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.parent_id:
            return
        import mlflow

        client = mlflow.MlflowClient(self.uri)
        children = client.search_runs(
            [client.get_run(self.parent_id).info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{self.parent_id}'"
        )
        client.set_tag(self.parent_id, "sweep.num_jobs", str(len(children)))
        finished = [r for r in children if r.info.status == "FINISHED" and "test_loss" in r.data.metrics]
        if finished:
            best = min(finished, key=lambda r: r.data.metrics["test_loss"])
            client.set_tag(self.parent_id, "sweep.best_run_id", best.info.run_id)
            for key, value in best.data.metrics.items():
                client.log_metric(self.parent_id, f"best/{key}", value)  # a section of its own in the chart view
        client.set_terminated(self.parent_id, "FINISHED" if len(finished) == len(children) else "FAILED")
        print(summary_table(children, self.parent_id, client.get_run(self.parent_id).data.tags.get("sweep.best_run_id")), flush=True)
        os.environ.pop(PARENT_RUN_ENV, None)
        os.environ.pop(SWEEP_OVERRIDES_ENV, None)
