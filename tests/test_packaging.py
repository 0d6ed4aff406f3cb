"""The built wheel carries the config tree: `expkit` works from an installed wheel, not only from the source checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, expkit_env, output_dirs


@pytest.mark.slow
def test_wheel_install_finds_its_configs_and_trains(tmp_path: Path) -> None:
    dist, site = tmp_path / "dist", tmp_path / "site"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)], capture_output=True, text=True, timeout=300
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("expkit-*.whl")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)], capture_output=True, text=True
    )
    assert installed.returncode == 0, installed.stderr
    assert (site / "expkit" / "conf" / "experiment" / "mnist_dense.yaml").is_file()

    work = tmp_path / "work"
    work.mkdir()
    env = expkit_env(PYTHONPATH=str(site))  # the wheel's copy shadows the source checkout
    where = subprocess.run(
        [sys.executable, "-c", "import expkit; print(expkit.__file__)"], cwd=work, env=env, capture_output=True, text=True
    )
    assert where.stdout.strip() == str(site / "expkit" / "__init__.py")
    cmd = [sys.executable, "-m", "expkit.cli"]
    shown = subprocess.run([*cmd, "show", "+experiment=reuters_dense"], cwd=work, env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "name: reuters_dense" in shown.stdout
    trained = subprocess.run([*cmd, "train", "trainer.epochs=1", "trainer.verbose=0"], cwd=work, env=env, capture_output=True, text=True)
    assert trained.returncode == 0, trained.stderr
    (run_dir,) = output_dirs(work)
    assert (run_dir / "checkpoints" / "final.keras").is_file() and (work / "mlflow.db").is_file()
