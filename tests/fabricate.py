"""Fill a real MLflow store with runs shaped like the ones `expkit train` records, without training. Plain functions, no pytest."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param

from expkit.tracking.store import ensure_experiment


@dataclass
class FakeStore:
    root: Path
    uri: str
    client: mlflow.MlflowClient
    experiment_id: str


def make_store(root: Path, experiment: str) -> FakeStore:
    """root/mlflow.db with `experiment`, its artifacts under root/mlartifacts: where and how expkit creates them."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    experiment_id = ensure_experiment(uri, experiment, str(root / "mlartifacts"))
    return FakeStore(root, uri, mlflow.MlflowClient(uri), experiment_id)


def with_experiment(store: FakeStore, experiment: str) -> FakeStore:
    """The same store, writing to another experiment (created if new): cheaper than a second fresh store."""
    return FakeStore(store.root, store.uri, store.client, ensure_experiment(store.uri, experiment, str(store.root / "mlartifacts")))


def add_run(
    store: FakeStore,
    *,
    name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    history: dict[str, list[float]] | None = None,
    tags: dict[str, str] | None = None,
    status: str = "FINISHED",
    start_time: int | None = None,
    experiment_id: str | None = None,
    artifacts: dict[str, str] | None = None,
) -> Any:
    """One run: params, final metrics (step 0), per-epoch `history` (steps 0..n-1), tags, text artifacts, a final status."""
    client = store.client
    start = start_time or int(time.time() * 1000)
    run = client.create_run(experiment_id or store.experiment_id, start_time=start, tags=tags or {}, run_name=name)
    run_id = run.info.run_id
    items = [Metric(k, float(v), start, step) for k, values in (history or {}).items() for step, v in enumerate(values)]
    items += [Metric(k, float(v), start, 0) for k, v in metrics.items()]
    client.log_batch(run_id, metrics=items, params=[Param(k, str(v)) for k, v in params.items()])
    for path, text in (artifacts or {}).items():
        client.log_text(run_id, text, path)
    if status != "RUNNING":
        client.set_terminated(run_id, status=status, end_time=start + 1000)
    return client.get_run(run_id)


@contextlib.contextmanager
def run_ids_starting_with(prefix: str) -> Iterator[None]:
    """While active, MLflow's SQL store gives new runs ids that start with `prefix` (the rest stays random and unique)."""
    from mlflow.store.tracking import sqlalchemy_store

    real = uuid.uuid4
    sqlalchemy_store.uuid.uuid4 = lambda: uuid.UUID(hex=prefix + real().hex[len(prefix) :])  # type: ignore[attr-defined]
    try:
        yield
    finally:
        sqlalchemy_store.uuid.uuid4 = real  # type: ignore[attr-defined]


def expkit_params(lr: str, output_dir: str) -> dict[str, Any]:
    """The params `expkit train trainer.epochs=2 optimizer.learning_rate=LR` logs for the default digits MLP (a subset)."""
    return {
        "name": "digits_mlp",
        "seed": 42,
        "trainer.epochs": 2,
        "trainer.batch_size": 32,
        "model.units": 64,
        "model.layers.0.units": 64,
        "model.loss": "sparse_categorical_crossentropy",
        "optimizer.type": "Adam",
        "optimizer.learning_rate": lr,
        "paths.output_dir": output_dir,
        "model.num_params": 64 * 64 + 64 + 64 * 10 + 10,
    }
