"""Shared fixtures: run the real `expkit` command in a clean folder and read what it recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EXPKIT_SHARED_DATA", REPO.parent / "shared" / "datasets"))


def expkit_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "EXPKIT_", "HYDRA_"))}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run_expkit(*args: str, cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m expkit.cli ARGS` in `cwd` (the same entry point as the `expkit` script)."""
    return subprocess.run(
        [sys.executable, "-m", "expkit.cli", *args], cwd=cwd, env=expkit_env(**env), capture_output=True, text=True, timeout=timeout
    )


def output_dirs(root: Path) -> list[Path]:
    """Every run folder (one holding metrics.json or run_id) below root/outputs."""
    return sorted({p.parent for p in (root / "outputs").rglob("config.yaml") if p.parent.name != ".hydra"})


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty folder to run expkit from."""
    return tmp_path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "mnist.npz").is_file():
        pytest.skip(f"real datasets not found in {SHARED_DATA} (set EXPKIT_SHARED_DATA)")
    return SHARED_DATA


def mlflow_runs(root: Path, experiment: str) -> list:
    """All runs of `experiment` in root/mlflow.db."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r} in {root / 'mlflow.db'}"
    return client.search_runs([exp.experiment_id])
