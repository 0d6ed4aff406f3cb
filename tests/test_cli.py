"""The `expkit` command end to end: start-up, config display, training, tracking, sweeps, clean errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest

from expkit.data.pipeline import load_splits
from tests.conftest import BlockedDownloads, compose, expkit_env, mlflow_runs, output_dirs, read_metrics, run_expkit, run_inprocess

# Each command line in one fresh process, one after another (Hydra's state cleared between them): its exit code, and the
# heavy modules imported so far. A module imported by one command stays imported, so the first command that imports one
# fails, and every later one with it.
NO_HEAVY_IMPORTS = """
import json
import sys

from expkit.cli import app

commands, out = json.loads(sys.argv[1]), sys.argv[2]  # read first: `expkit train` rewrites sys.argv
results = []
for args in commands:
    if "hydra.core.global_hydra" in sys.modules:
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().clear()
    try:
        app(args, prog_name="expkit")
        code = 0
    except SystemExit as stop:
        code = stop.code or 0
    results.append({"code": code, "heavy": sorted(m for m in ("tensorflow", "keras", "mlflow") if m in sys.modules)})
with open(out, "w") as file:
    json.dump(results, file)
"""

LIGHT_COMMANDS = [
    (["--help"], 0),
    (["train", "--help"], 0),
    (["show", "+experiment=imdb_dense"], 0),
    (["list"], 0),
    (["validate", "+experiment=reuters_dense"], 0),
    (["train", "trainer.epoch=3"], 2),
    (["train", "trainer.epochs=ten"], 2),
    (["train", "+model.layers.0.unit=3"], 2),
    (["train", "+experiment=imdb_dense", "model.loss=categorical_crossentropy"], 2),
    (["validate", "trainer.strategy=multi_worker_mirrored"], 2),  # refused before TensorFlow starts (test_cluster.py)
]


@pytest.fixture(scope="module")
def light_commands(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """LIGHT_COMMANDS run in one real `python` process (a process each cost a second of start-up apiece)."""
    import json

    folder = tmp_path_factory.mktemp("light")
    out = folder / "results.json"
    args = [json.dumps([a for a, _ in LIGHT_COMMANDS]), str(out)]
    done = subprocess.run([sys.executable, "-c", NO_HEAVY_IMPORTS, *args], cwd=folder, env=expkit_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


@pytest.mark.parametrize(("index", "args", "exit_code"), [(i, a, c) for i, (a, c) in enumerate(LIGHT_COMMANDS)])
def test_cli_startup_and_config_errors_import_no_tensorflow_or_mlflow(
    light_commands: list[dict], index: int, args: list[str], exit_code: int
) -> None:
    result = light_commands[index]
    assert result["code"] == exit_code, (args, result)
    first = next((LIGHT_COMMANDS[i][0] for i, r in enumerate(light_commands) if r["heavy"]), None)
    assert not result["heavy"], f"{result['heavy']} imported by then; first by {first}"


def test_show_prints_resolved_preset(workdir: Path) -> None:
    done = run_inprocess("show", "+experiment=imdb_dense", "model.units=32", cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert "name: imdb_dense" in done.stdout
    assert "units: 32" in done.stdout and "${model.units}" not in done.stdout
    assert f"root_dir: {workdir}" in done.stdout


def test_list_shows_presets_and_groups(workdir: Path) -> None:
    done = run_inprocess("list", cwd=workdir)
    assert done.returncode == 0
    presets = next(line for line in done.stdout.splitlines() if line.startswith("experiment:"))
    for name in ("mnist_dense", "torres_mnist_dense", "imdb_dense", "reuters_dense", "boston_final"):
        assert name in presets
    assert "optimizer:" in done.stdout


def test_default_train_records_everything(workdir: Path) -> None:
    """In-process (the same `expkit train` command line); the slow set trains through real processes."""
    done = run_inprocess("train", "trainer.epochs=3", "trainer.verbose=0", cwd=workdir)
    assert done.returncode == 0, done.stderr
    (run_dir,) = output_dirs(workdir)
    assert (run_dir / "checkpoints" / "best.keras").stat().st_size > 0
    assert (run_dir / "checkpoints" / "final.keras").stat().st_size > 0
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    # Default digits MLP, 3 epochs at Adam 1e-3: test accuracy 0.858-0.911 over seeds 0-4 (0.86, 0.88, 0.86, 0.91, 0.86).
    # Chance is 0.1; unscaled inputs or labels out of step with the features fall far below 0.8.
    assert read_metrics(run_dir)["test"]["test_accuracy"] > 0.8

    (run,) = mlflow_runs(workdir, "digits_mlp")
    assert run.info.status == "FINISHED"
    assert run.info.run_id == (run_dir / "run_id").read_text().strip()
    assert run.data.params["trainer.epochs"] == "3"
    assert run.data.params["model.units"] == "64" and "model.layers.0.units" not in run.data.params  # one param per knob
    assert int(run.data.metrics["model.num_params"]) == 64 * 64 + 64 + 64 * 10 + 10
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert steps == [0, 1, 2]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [0, 1, 2]
    assert "test_accuracy" in run.data.metrics
    # The data the run trained on is identified by its fingerprint (and not a git commit: the folder is no repo).
    digits = compose(root=workdir)
    assert run.data.tags["dataset.fingerprint"] == load_splits(digits.dataset, data_dir=None, seed=digits.seed).fingerprint
    assert "git.commit" not in run.data.tags
    assert run.data.metrics["test_accuracy"] == pytest.approx(read_metrics(run_dir)["test"]["test_accuracy"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert artifacts == {"plots/loss.png", "plots/accuracy.png", "plots/confusion_matrix.png"}
    # The logged model loads through pyfunc and predicts class probabilities.
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(run.data.tags["model_uri"])
    probs = np.asarray(model.predict(np.zeros((2, 64), dtype=np.float32)))
    assert probs.shape == (2, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)


@pytest.mark.slow
def test_real_mnist_one_epoch_trains(workdir: Path, shared_data: Path) -> None:
    done = run_inprocess(
        "train", "+experiment=mnist_dense", "trainer.epochs=1", "trainer.verbose=0", "tracking.log_model=false",
        cwd=workdir, EXPKIT_DATA_DIR=str(shared_data),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (run_dir,) = output_dirs(workdir)
    # The book's network, all 60,000 training images, 1 epoch: test accuracy 0.957-0.960 over seeds 0-2 (0.9574, 0.9604, 0.9574).
    # The same run with unscaled pixels (no /255) gets 0.919-0.935; labels out of step with the images get ~0.1.
    # (A 6,000-image, 3-epoch subset could not tell the two apart: 0.894-0.905 against 0.872-0.883.)
    assert read_metrics(run_dir)["test"]["test_accuracy"] > 0.945


@pytest.mark.slow
def test_multirun_sweep_records_a_run_per_job(workdir: Path, shared_data: Path) -> None:
    done = run_inprocess(
        "train", "-m", "+experiment=mnist_dense", "trainer.epochs=1", "optimizer.learning_rate=1e-3,1e-4",
        "dataset.max_train_samples=2000", "dataset.validation.holdout=500", "dataset.max_test_samples=500", "trainer.verbose=0",
        "tracking.log_model=false",
        cwd=workdir, EXPKIT_DATA_DIR=str(shared_data),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    runs = mlflow_runs(workdir, "mnist_dense")
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    (parent,) = [r for r in runs if r.data.tags.get("expkit.sweep") == "parent"]
    assert len(children) == 2 and {r.data.params["optimizer.learning_rate"] for r in children} == {"0.001", "0.0001"}
    assert all(r.info.status == "FINISHED" and r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
    best = min(children, key=lambda r: r.data.metrics["objective"])  # selection is on validation (val_loss), never test
    assert parent.data.tags["sweep.best_run_id"] == best.info.run_id
    assert parent.info.status == "FINISHED"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["trainer.epoch=3"], ["trainer.epoch", "did you mean 'trainer.epochs'"]),
        (["optimizer.learning_rat=0.1"], ["did you mean 'optimizer.learning_rate'"]),
        (["-m", "optimizer.lr=1e-3,1e-4"], ["optimizer.lr", "did you mean 'optimizer.learning_rate'"]),
        (["optimizer.rate=0.1"], ["keys under 'optimizer': type, learning_rate. To add a new key"]),
        (["+experiment=mnist_dens"], ["unknown preset 'mnist_dens'", "did you mean 'mnist_dense'"]),
        (["model.layers.0.type=Dens"], ["model.layers.0.type", "unknown layer 'Dens'", "did you mean 'Dense'"]),
        (["model.layers.0.unit=3"], ["model.layers.0.unit", "did you mean 'model.layers.0.units'"]),
        (["+model.layers.0.unit=3"], ["Dense has no argument 'unit'", "did you mean 'units'"]),
        (["trainer.epochs=ten"], ["trainer.epochs", "whole number"]),
        (["model.loss=categorical_crossentropy"], ["categorical_crossentropy expects one-hot labels"]),
        (["dataset=nope"], ["unknown dataset option 'nope'"]),
        (["trainer.epochs=[1"], ["cannot parse override"]),
    ],
)
def test_bad_config_fails_cleanly(workdir: Path, args: list[str], expected: list[str]) -> None:
    done = run_inprocess("train", *args, cwd=workdir)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    for text in expected:
        assert text in done.stderr
    assert not (workdir / "mlflow.db").exists(), "config errors must fail before a run is created"


@pytest.mark.slow
def test_missing_dataset_offline_says_where_it_looked(workdir: Path, blocked_downloads: BlockedDownloads) -> None:
    """Holds with and without network: the download goes to a local proxy that refuses it (see tests/README.md)."""
    (workdir / "data").mkdir()
    data, keras_home = str(workdir / "data"), str(workdir / "kh")
    env = {"EXPKIT_DATA_DIR": data, "KERAS_HOME": keras_home, **blocked_downloads.env}
    done = run_expkit("train", "+experiment=mnist_dense", cwd=workdir, timeout=300, **env)
    assert blocked_downloads.requests == ["CONNECT storage.googleapis.com:443 HTTP/1.0"]
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert str(workdir / "data" / "mnist.npz") in done.stderr and "EXPKIT_DATA_DIR" in done.stderr
    (run,) = mlflow_runs(workdir, "mnist_dense")
    assert run.info.status == "FAILED"


@pytest.mark.slow
def test_nan_loss_fails_the_run_and_keeps_earlier_runs(workdir: Path) -> None:
    ok = run_inprocess("train", "trainer.epochs=1", "trainer.verbose=0", "tracking.log_model=false", cwd=workdir)
    assert ok.returncode == 0, ok.stderr
    bad = run_inprocess("train", "optimizer=sgd", "optimizer.learning_rate=1e10", "trainer.epochs=3", "trainer.verbose=0", cwd=workdir)
    assert bad.returncode == 2, bad.stderr
    assert "NaN" in bad.stderr and "Traceback" not in bad.stderr
    statuses = sorted(r.info.status for r in mlflow_runs(workdir, "digits_mlp"))
    assert statuses == ["FAILED", "FINISHED"]


USER_PRESET = """# @package _global_
name: my_dropout
model:
  layers:
    - {type: Dense, units: "${model.units}", activation: relu}
    - {type: Dropout, rate: RATE}
    - {type: Dense, units: 10, activation: softmax}
"""


@pytest.mark.parametrize(("rate", "code", "text"), [(0.5, 0, "config OK: my_dropout"), (1.5, 2, "model.layers.1.rate")])
def test_user_presets_from_config_dir(workdir: Path, rate: float, code: int, text: str) -> None:
    presets = workdir / "myconf" / "experiment"
    presets.mkdir(parents=True)
    (presets / "my_dropout.yaml").write_text(USER_PRESET.replace("RATE", str(rate)))
    done = run_inprocess("validate", "--config-dir", str(workdir / "myconf"), "+experiment=my_dropout", cwd=workdir)
    assert done.returncode == code, done.stderr
    assert text in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def slow_teardown(marker: str) -> int:
    """A joblib task whose worker, at exit, would spend a second and then leave `marker` behind."""
    import atexit
    import os
    import time

    def teardown() -> None:
        time.sleep(1)
        Path(marker).write_text("torn down")

    atexit.register(teardown)
    return os.getpid()


@pytest.mark.slow
def test_stop_idle_workers_kills_joblib_workers_without_their_teardown(tmp_path: Path) -> None:
    """A finished joblib sweep's idle workers are killed, not left to tear TensorFlow down for seconds with our pipes open."""
    import os

    from joblib import Parallel, delayed

    from expkit.cli import stop_idle_workers

    markers = [tmp_path / f"worker{i}" for i in range(2)]
    pids = set(Parallel(n_jobs=2, backend="loky")(delayed(slow_teardown)(str(m)) for m in markers))
    assert os.getpid() not in pids
    stop_idle_workers()
    for pid in pids:
        with pytest.raises(ProcessLookupError):  # gone, and reaped: not a zombie
            os.kill(pid, 0)
    assert not any(m.exists() for m in markers), "a worker ran its exit handlers"
    stop_idle_workers()  # nothing left to stop: a no-op
