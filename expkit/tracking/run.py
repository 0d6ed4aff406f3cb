"""One MLflow run per training: params, per-epoch metrics, test metrics, artifacts, model, status."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from expkit import __version__
from expkit.tracking.store import PARENT_RUN_ENV, ensure_experiment, flatten, tracking_uri

MAX_PARAM_LENGTH = 6000
BATCH = 100


def package_version(*names: str) -> str | None:
    """The installed version of the first of `names` found, read from package metadata (no import)."""
    from importlib.metadata import PackageNotFoundError, version

    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def git_state(path: str) -> dict[str, str]:
    """Commit and dirty flag of the git repo containing `path`, if any."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return {}
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=path, capture_output=True, text=True, timeout=5)
        return {"git.commit": commit.stdout.strip(), "git.dirty": str(bool(dirty.stdout.strip())).lower()}
    except (OSError, subprocess.SubprocessError):
        return {}


class TrackedRun:
    """The MLflow side of one training run. Use start(), then the log_* methods, then end()."""

    def __init__(self, *, uri: str | None, root_dir: str, experiment_name: str, artifact_dir: str) -> None:
        self.uri = tracking_uri(uri, root_dir)
        self.experiment_name = experiment_name
        self.artifact_dir = artifact_dir
        self.root_dir = root_dir
        self.client: mlflow.MlflowClient  # opened in create(), after the store exists
        self.run_id = ""
        self._tags: dict[str, str] = {}

    def start(self, run_name: str, tags: dict[str, str], run_id: str | None = None) -> str:
        """Start a new run, or continue run `run_id` (resume); returns the run id."""
        self.create(run_name, tags, run_id)
        self.activate()
        return self.run_id

    def create(self, run_name: str, tags: dict[str, str], run_id: str | None = None) -> str:
        """Open the store and create the run (or find `run_id`), without making it the active run.

        Imports neither Keras nor TensorFlow, so it can run in a thread while the main thread imports them.
        """
        from mlflow.tracking.context import registry

        experiment_id = ensure_experiment(self.uri, self.experiment_name, self.artifact_dir)
        self.client = mlflow.MlflowClient(self.uri)
        versions = {"keras.version": package_version("keras"), "tensorflow.version": package_version("tensorflow", "tensorflow-cpu")}
        self._tags = {
            **tags,
            "expkit.version": __version__,
            **{k: v for k, v in versions.items() if v},
            "host": platform.node(),
            **git_state(self.root_dir),
        }
        if run_id:
            self.run_id = run_id
            return run_id
        parent = os.environ.get(PARENT_RUN_ENV) or None
        run_tags = {**self._tags, MLFLOW_RUN_NAME: run_name, **({MLFLOW_PARENT_RUN_ID: parent} if parent else {})}
        run = self.client.create_run(experiment_id, tags=registry.resolve_tags(run_tags), run_name=run_name)
        self.run_id = run.info.run_id
        self._tags = {}  # already on the run
        return self.run_id

    def activate(self) -> None:
        """Make the run MLflow's active run in this thread (artifact and model logging use it)."""
        mlflow.start_run(run_id=self.run_id, tags=self._tags or None)

    def callback(self) -> Any:
        """The Keras callback that logs every epoch to this run."""
        from expkit.tracking.epochs import EpochLogger

        return EpochLogger(self.client, self.run_id)

    def log_params(self, config: dict[str, Any], extra: dict[str, Any]) -> None:
        """The flattened config as params. A value over MLflow's length limit goes in as an artifact."""
        params: dict[str, str] = {}
        for key, value in {**flatten(config), **extra}.items():
            text = str(value)
            if len(text) > MAX_PARAM_LENGTH:
                name = f"params/{key}.txt"
                self.client.log_text(self.run_id, text, name)
                text = f"<see artifact {name}>"
            params[key] = text
        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + BATCH])

    def set_tags(self, tags: dict[str, str]) -> None:
        items = [RunTag(k, str(v)) for k, v in tags.items()]
        self.client.log_batch(self.run_id, tags=items)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def backfill(self, history: dict[str, list[float]], last_epoch: int) -> None:
        """On resume: log the saved epochs MLflow missed (a crash between state save and logging)."""
        logged = {m.step for m in self.client.get_metric_history(self.run_id, "loss")}
        now = int(time.time() * 1000)
        missing = [
            Metric(k, values[e], now, e)
            for k, values in history.items()
            for e in range(min(last_epoch + 1, len(values)))
            if e not in logged
        ]
        for i in range(0, len(missing), 1000):
            self.client.log_batch(self.run_id, metrics=missing[i : i + 1000])

    def log_plots(self, history: dict[str, list[float]], loss: Any, model: Any, splits: Any, out_dir: Path, smoothing: float) -> None:
        """Learning curves, and a test confusion matrix for classifiers."""
        from expkit.tracking import plots

        paths = plots.learning_curves(history, out_dir, smoothing)
        loss_name = loss if isinstance(loss, str) else str(loss.get("type", ""))
        if "crossentropy" in loss_name.lower() or "hinge" in loss_name.lower():
            from expkit.training.feeding import batches

            outputs = model.predict(batches(splits.x_test, None, 256), verbose=0)
            paths.append(plots.confusion_matrix_png(splits.y_test, outputs, out_dir / "confusion_matrix.png"))
        self.log_artifacts(paths, artifact_path="plots")

    def log_artifacts(self, paths: list[Path], artifact_path: str | None = None) -> None:
        """Files and folders as run artifacts (through the client, so any thread may call it)."""
        for path in paths:
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), artifact_path=path.name if artifact_path is None else artifact_path)
            elif path.exists():
                self.client.log_artifact(self.run_id, str(path), artifact_path=artifact_path)

    def log_model(self, model: Any, input_example: Any) -> str:
        """Log with MLflow's Keras flavor and a tensor signature inferred from `input_example`; returns the model URI.

        The example itself is stored beside the model as `model_input_example.json`: mlflow 3.17's Keras
        flavor fails when given `input_example` (it writes the example before creating the model folder).
        """
        import keras
        import numpy as np
        import tensorflow as tf
        from mlflow.models import infer_signature

        example = np.asarray(input_example).astype(np.float32)
        signature = infer_signature(example, np.asarray(model.predict(example, verbose=0)))
        requirements = [f"keras=={keras.__version__}", f"tensorflow=={tf.__version__}", f"mlflow=={mlflow.__version__}"]
        info = mlflow.keras.log_model(model, name="model", signature=signature, pip_requirements=requirements)
        mlflow.log_dict({"inputs": example.tolist()}, "model_input_example.json")
        self.set_tags({"model_uri": info.model_uri})
        return str(info.model_uri)

    def end(self, status: str = "FINISHED") -> None:
        """Flush async logging and close the run as FINISHED, FAILED or KILLED."""
        if not self.run_id:
            return
        try:
            mlflow.flush_async_logging()
        finally:
            mlflow.end_run(status=status)
            if RunStatus.from_string(status) != RunStatus.FINISHED:
                self.client.set_terminated(self.run_id, status=status)
