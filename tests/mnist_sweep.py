"""One small real-MNIST sweep (2 seeds), trained once per test process and shared by the serving, TensorBoard,
terminal-output and UI tests. Plain functions, no pytest fixtures (each test module wraps them).

It runs in the test process (`run_inprocess`, Hydra's basic launcher, one job after the other): what these tests read
(runs, labels, logged models, TensorBoard folders) is the same under every launcher, and joblib's own path has its
tests (test_runs.py, test_quiet.py, test_reliability.py) in real processes."""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities import Run

from tests.conftest import run_inprocess

EXPERIMENT = "mnist_dense"
SWEEP = (
    "train", "-m", "+experiment=mnist_dense", "seed=1,2", "dataset.max_train_samples=1200", "dataset.validation.holdout=200",
    "dataset.max_test_samples=500", "trainer.epochs=2",
)  # fmt: skip


@dataclass
class Sweep:
    root: Path
    stdout: str
    stderr: str
    returncode: int

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(self.uri)

    def runs(self) -> list[Run]:
        client = self.client()
        experiment = client.get_experiment_by_name(EXPERIMENT)
        assert experiment is not None, self.stderr[-3000:]
        return client.search_runs([experiment.experiment_id])

    def parent(self) -> Run:
        (parent,) = [r for r in self.runs() if r.data.tags.get("expkit.sweep") == "parent"]
        return parent

    def children(self) -> list[Run]:
        """The two training runs, seed 1 first."""
        parent_id = self.parent().info.run_id
        found = [r for r in self.runs() if r.data.tags.get("mlflow.parentRunId") == parent_id]
        return sorted(found, key=lambda r: r.data.params["seed"])


@functools.cache
def mnist_sweep(data_dir: Path) -> Sweep:
    """Train the sweep in a fresh folder (once per process)."""
    root = Path(tempfile.mkdtemp(prefix="expkit-mnist-sweep-"))
    done = run_inprocess(*SWEEP, cwd=root, EXPKIT_DATA_DIR=str(data_dir))
    return Sweep(root, done.stdout, done.stderr, done.returncode)
