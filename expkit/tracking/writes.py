"""Writes to an MLflow store that any thread may make: one step's metrics in a batch, and inserts that race with parallel jobs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import mlflow


def log_metrics(client: mlflow.MlflowClient, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    """Metrics at one step, in one batch (float32 values as their shortest decimal: see `values.readable`)."""
    from mlflow.entities import Metric

    from expkit.tracking.values import readable

    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, readable(v), now, step) for k, v in metrics.items()])


#: How a store's database refuses a second copy of a row (SQLite, PostgreSQL, MySQL), locally or through a server.
DUPLICATE_ROW = ("UNIQUE constraint failed", "duplicate key value", "Duplicate entry")


def tolerate_concurrent_insert(write: Callable[[], None], attempts: int = 3) -> None:
    """Run `write` (a store write), again when a concurrent run inserted the same new row first.

    MLflow looks a row up, then inserts it: parallel jobs writing one new dataset (a sweep's) or one new experiment
    tag can all miss it, and every insert but one fails. On the next attempt the row is found and linked or updated.
    """
    for attempt in range(attempts):
        try:
            write()
            return
        except Exception as exc:
            if attempt == attempts - 1 or not any(marker in str(exc) for marker in DUPLICATE_ROW):
                raise
            time.sleep(0.05 * (attempt + 1))


def log_finished_run(
    client: mlflow.MlflowClient,
    experiment_id: str,
    run_name: str,
    *,
    tags: dict[str, str],
    params: dict[str, object],
    metrics: dict[str, float],
    texts: dict[str, str],
) -> str:
    """A run recorded whole and ended FINISHED (an ensemble's): its tags, params, step-0 metrics and text artifacts."""
    from mlflow.entities import Param

    run = client.create_run(experiment_id, run_name=run_name[:100], tags=tags)
    run_id = str(run.info.run_id)
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
    log_metrics(client, run_id, metrics)
    for name, text in texts.items():
        client.log_text(run_id, text, name)
    client.set_terminated(run_id, "FINISHED")
    return run_id


def log_artifacts(client: mlflow.MlflowClient, run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
    """Files and folders as run artifacts (a folder under its own name unless `artifact_path` is given); missing ones skipped."""
    for path in paths:
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path=path.name if artifact_path is None else artifact_path)
        elif path.exists():
            client.log_artifact(run_id, str(path), artifact_path=artifact_path)
