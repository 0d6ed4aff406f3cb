"""Crash-safe resume, signals, config drift, bad data through the CLI, and concurrent tracking."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import pytest

from expkit.data.pipeline import load_splits
from expkit.errors import ExpkitError
from tests import outage
from tests.conftest import REPO, compose, expkit_env, mlflow_runs, output_dirs, read_metrics, run_expkit, run_inprocess
from tests.fabricate import add_run, make_store

FAST = ("trainer.verbose=0", "tracking.log_model=false")


# ---------------------------------------------------------------- the tracking server goes away (tests/outage.py)

OUTAGES: dict[str, Callable[[Path, dict[str, str]], None]] = {
    "test_server_killed_in_epoch_2_and_back_30_s_later_the_run_finishes_complete": outage.server_back_30_s_later,
    "test_server_gone_for_good_the_job_exits_75_and_resume_delivers_the_whole_run": outage.server_gone_for_good,
}


@pytest.fixture(scope="module", autouse=True)
def outages(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[None]]]:
    """Starts the selected outage scenarios in background threads when this module starts. They mostly wait (paced
    epochs, a server kept away for 30 s), so this file's other tests run meanwhile; their tests, last in the file, wait
    for them. The environment of their processes is taken now: in-process commands change `os.environ` meanwhile."""
    selected = {item.name for item in request.session.items if item.module is request.module} & set(OUTAGES)  # type: ignore[attr-defined]
    env = expkit_env()
    with ThreadPoolExecutor(max_workers=max(len(selected), 1)) as pool:
        yield {name: pool.submit(OUTAGES[name], tmp_path_factory.mktemp("outage"), env) for name in sorted(selected)}


def crash_callback(workdir: Path, epoch: int, signum: int) -> str:
    """An override adding tests.crash.SignalSelf, which signals the training process once."""
    marker = workdir / f"fired-{signum}"
    return f"+callbacks.crash={{_target_: tests.crash.SignalSelf, epoch: {epoch}, signum: {int(signum)}, marker: '{marker}'}}"


def loss_steps(workdir: Path, run_id: str) -> list[int]:
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    return [m.step for m in client.get_metric_history(run_id, "loss")]


def kill_after_state_save(workdir: Path, epoch: int) -> str:
    """An override adding tests.crash.KillAfterStateSave: kill -9 after epoch `epoch`'s state is saved, before MLflow logs it."""
    return f"+callbacks.crash={{_target_: tests.crash.KillAfterStateSave, epoch: {epoch}, marker: '{workdir / 'fired-state'}'}}"


@pytest.mark.slow
def test_kill_9_between_state_save_and_mlflow_log_then_resume_backfills_the_epoch(workdir: Path) -> None:
    crashed = run_expkit("train", "trainer.epochs=4", kill_after_state_save(workdir, 1), *FAST, cwd=workdir, PYTHONPATH=str(REPO))
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    (run,) = mlflow_runs(workdir, "digits_mlp")
    (run_dir,) = output_dirs(workdir)
    state = json.loads((run_dir / "checkpoints" / "resume" / "state.json").read_text())
    assert state["epoch"] == 1 and len(state["history"]["loss"]) == 2  # epoch 1 was saved ...
    assert run.info.status == "RUNNING" and loss_steps(workdir, run.info.run_id) == [0]  # ... but never reached MLflow

    resumed = run_inprocess("resume", str(run_dir), cwd=workdir, PYTHONPATH=str(REPO))  # by folder path
    assert resumed.returncode == 0, resumed.stderr
    assert "after epoch 2" in resumed.stderr
    (run,) = mlflow_runs(workdir, "digits_mlp")
    assert run.info.status == "FINISHED"
    assert loss_steps(workdir, run.info.run_id) == [0, 1, 2, 3]  # no gap: epoch 1 was backfilled from the saved state
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    for key in ("loss", "val_loss", "accuracy"):
        (epoch_1,) = [m.value for m in client.get_metric_history(run.info.run_id, key) if m.step == 1]
        assert epoch_1 == pytest.approx(state["history"][key][1])
    assert read_metrics(run_dir)["epochs_run"] == 4
    # Same TensorBoard dir (named after the MLflow run), two sessions.
    assert len(list((run_dir / "tensorboard").glob(f"*_{run.info.run_id[:8]}/train/events.out.tfevents.*"))) == 2

    # Resuming again finds nothing unfinished.
    again = run_inprocess("resume", "latest", cwd=workdir)
    assert again.returncode == 2 and "no unfinished run" in again.stderr


@pytest.mark.slow
def test_resume_matches_an_uninterrupted_run(workdir: Path) -> None:
    straight, interrupted = workdir / "straight", workdir / "interrupted"
    straight.mkdir(), interrupted.mkdir()
    common = ("trainer.epochs=5", "trainer.deterministic=true", *FAST)
    assert run_inprocess("train", *common, cwd=straight).returncode == 0
    run_expkit("train", *common, crash_callback(interrupted, 1, signal.SIGKILL), cwd=interrupted, PYTHONPATH=str(REPO))
    assert run_inprocess("resume", "latest", cwd=interrupted, PYTHONPATH=str(REPO)).returncode == 0
    (a,), (b,) = output_dirs(straight), output_dirs(interrupted)
    # Weights, optimizer state and the per-epoch shuffle order are restored exactly: the same numbers, bit for bit.
    assert read_metrics(b)["final"] == read_metrics(a)["final"]
    assert read_metrics(b)["test"] == read_metrics(a)["test"]


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_at_batch_boundary_marks_killed_and_resumes(workdir: Path, signum: int, code: int) -> None:
    stopped = run_expkit("train", "trainer.epochs=4", crash_callback(workdir, 2, signum), *FAST, cwd=workdir, PYTHONPATH=str(REPO))
    assert stopped.returncode == code, stopped.stderr
    assert "Traceback" not in stopped.stderr and "expkit resume" in stopped.stderr
    (run,) = mlflow_runs(workdir, "digits_mlp")
    assert run.info.status == "KILLED"
    assert loss_steps(workdir, run.info.run_id) == [0, 1]  # the cut-short epoch is not recorded

    resumed = run_inprocess("resume", run.info.run_id[:10], cwd=workdir, PYTHONPATH=str(REPO))
    assert resumed.returncode == 0, resumed.stderr
    (run,) = mlflow_runs(workdir, "digits_mlp")
    assert run.info.status == "FINISHED" and loss_steps(workdir, run.info.run_id) == [0, 1, 2, 3]


@pytest.mark.slow
def test_resume_refuses_a_changed_config_unless_forced(workdir: Path) -> None:
    presets = workdir / "conf" / "experiment"
    presets.mkdir(parents=True)
    (presets / "mine.yaml").write_text("# @package _global_\nname: mine\ntrainer:\n  batch_size: 32\n")
    args = ("--config-dir", str(workdir / "conf"), "+experiment=mine", "trainer.epochs=4")
    run_expkit("train", *args, crash_callback(workdir, 1, signal.SIGKILL), *FAST, cwd=workdir, PYTHONPATH=str(REPO))
    (presets / "mine.yaml").write_text("# @package _global_\nname: mine\ntrainer:\n  batch_size: 64\n")

    refused = run_inprocess("resume", "latest", cwd=workdir, PYTHONPATH=str(REPO))
    assert refused.returncode == 2
    assert "config changed" in refused.stderr and "trainer.batch_size: 32 -> 64" in refused.stderr and "--force" in refused.stderr

    forced = run_inprocess("resume", "latest", "--force", cwd=workdir, PYTHONPATH=str(REPO))
    assert forced.returncode == 0, forced.stderr
    (run,) = mlflow_runs(workdir, "mine")
    assert run.info.status == "FINISHED"
    assert "trainer.batch_size: 32 -> 64" in run.data.tags["resume.config_drift"]


def bad_npz(kind: str, path: Path) -> None:
    """Write a mnist.npz that is wrong in one way."""
    rng = np.random.default_rng(0)
    good = {
        "x_train": rng.integers(0, 255, (60, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 60).astype(np.uint8),
        "x_test": rng.integers(0, 255, (20, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, 20).astype(np.uint8),
    }
    if kind == "truncated":
        np.savez(path, **good)
        path.write_bytes(path.read_bytes()[:5000])
    elif kind == "missing_key":
        np.savez(path, **{k: v for k, v in good.items() if k != "y_test"})
    elif kind == "length_mismatch":
        np.savez(path, **{**good, "y_train": good["y_train"][:50]})
    elif kind == "label_range":
        np.savez(path, **{**good, "y_train": good["y_train"] + 10})
    elif kind == "nan":
        x = good["x_train"].astype(np.float32)
        x[3, 4, 5] = np.nan
        np.savez(path, **{**good, "x_train": x})


BAD_DATA = [
    ("truncated", "cannot read"),
    ("missing_key", "has no array(s) y_test"),
    ("length_mismatch", "y_train has 50"),
    ("label_range", "outside 0..9"),
    ("nan", "NaN or inf"),
]


@pytest.mark.parametrize(("kind", "expected"), BAD_DATA)
def test_bad_data_is_refused_naming_the_file(tmp_path: Path, kind: str, expected: str) -> None:
    """What `expkit train +experiment=mnist_dense` loads, in-process: each broken file is one clear ExpkitError."""
    data = tmp_path / "data"
    data.mkdir()
    bad_npz(kind, data / "mnist.npz")
    config = compose("+experiment=mnist_dense", root=tmp_path)
    with pytest.raises(ExpkitError) as info:
        load_splits(config.dataset, data_dir=str(data), seed=config.seed)
    assert expected in str(info.value)
    if kind != "label_range":
        assert str(data / "mnist.npz") in str(info.value)
    else:
        assert info.value.key == "dataset.preprocess.y.one_hot.num_classes"


def test_bad_data_fails_the_run_cleanly_and_keeps_earlier_runs(workdir: Path) -> None:
    earlier = add_run(make_store(workdir, "mnist_dense"), name="earlier", params={"seed": 42}, metrics={"test_accuracy": 0.97})
    data = workdir / "data"
    data.mkdir()
    bad_npz("nan", data / "mnist.npz")
    failed = run_inprocess("train", "+experiment=mnist_dense", "trainer.epochs=1", *FAST, cwd=workdir, EXPKIT_DATA_DIR=str(data))
    assert failed.returncode == 2, failed.stderr
    assert "Traceback" not in failed.stderr and "NaN or inf" in failed.stderr and str(data / "mnist.npz") in failed.stderr
    runs = sorted(mlflow_runs(workdir, "mnist_dense"), key=lambda r: r.info.start_time)
    assert [r.info.status for r in runs] == ["FINISHED", "FAILED"]
    assert runs[0].info.run_id == earlier.info.run_id and runs[0].data.metrics == {"test_accuracy": 0.97}  # the earlier run is intact
    assert "NaN or inf" in runs[1].data.tags["failure"]


def test_a_file_that_is_not_an_mlflow_store_is_one_clear_error(workdir: Path) -> None:
    """The store is opened before training; its failure reaches the user as one line (the opener's: test_tracking_units)."""
    (workdir / "broken.db").write_text("not a database\n")
    store = f"sqlite:///{workdir / 'broken.db'}"
    failed = run_inprocess("train", "+experiment=mnist_dense", "trainer.epochs=1", *FAST, f"tracking.uri={store}", cwd=workdir)
    assert failed.returncode == 2, failed.stderr
    assert "Traceback" not in failed.stderr
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: tracking.uri: cannot open the MLflow store {store}: (sqlite3.DatabaseError) file is not a database"]
    assert (workdir / "broken.db").read_text() == "not a database\n"  # left as it was


@pytest.mark.parametrize("launcher", ["basic", pytest.param("joblib", marks=pytest.mark.slow)])
def test_a_sweep_into_a_file_that_is_not_an_mlflow_store_is_one_clear_error(workdir: Path, launcher: str) -> None:
    """The sweep's parent run fails: one error, exit 2, no job reports it again (under joblib the jobs have already started)."""
    (workdir / "broken.db").write_text("not a database\n")
    store = f"sqlite:///{workdir / 'broken.db'}"
    pool = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    run = run_expkit if launcher == "joblib" else run_inprocess  # joblib's workers: from a real process
    sweep = ("train", "-m", "+experiment=mnist_dense", "trainer.epochs=1", *FAST, "model.units=8,16", f"tracking.uri={store}", *pool)
    failed = run(*sweep, cwd=workdir)
    assert failed.returncode == 2, failed.stderr
    assert "Traceback" not in failed.stderr and "Warning" not in failed.stderr and "job failed" not in failed.stderr
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: tracking.uri: cannot open the MLflow store {store}: (sqlite3.DatabaseError) file is not a database"]
    assert (workdir / "broken.db").read_text() == "not a database\n"


def children_running(pid: int, module: str) -> bool:
    """Whether a child of `pid` runs `python -m module`."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid and module.encode() in command:
            return True
    return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the opener process through /proc")
def test_ctrl_c_while_tensorflow_loads_marks_the_opened_run_killed(workdir: Path) -> None:
    """Ctrl-C reaches the job and the process creating its run; the run is created, then marked KILLED, without a traceback."""
    job = subprocess.Popen(
        [sys.executable, "-m", "expkit.cli", "train", "trainer.epochs=2", *FAST],
        cwd=workdir,
        env=expkit_env(EXPKIT_RUN_OPENER="1"),  # the opener is opt-in (expkit.tracking.opener.wanted)
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # As in a terminal's foreground job: Ctrl-C at its default. A process inherits an ignored SIGINT (a pytest-xdist
        # worker's may be), and Python then never raises KeyboardInterrupt, as for a background job.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not children_running(job.pid, "expkit.tracking.opener"):
        assert job.poll() is None and time.monotonic() < deadline, "the run was not created by an opener process"
        time.sleep(0.01)
    time.sleep(0.2)  # the job hands the opener its request right after starting it; TensorFlow's import takes seconds more
    os.killpg(job.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground process group
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 130, stderr
    assert "aborted before training started" in stderr and "Traceback" not in stderr, stderr
    (run,) = mlflow_runs(workdir, "digits_mlp")
    assert run.info.status == "KILLED"


@pytest.mark.slow
def test_concurrent_runs_on_a_fresh_store(workdir: Path) -> None:
    repetitions = int(os.environ.get("EXPKIT_CONCURRENCY_REPS", "1"))
    for rep in range(repetitions):
        root = workdir / f"rep{rep}"
        root.mkdir()
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "expkit.cli", "train", "trainer.epochs=2", f"seed={i}", *FAST],
                cwd=root,
                env=expkit_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(4)
        ]
        errors = [p.communicate(timeout=600)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
        runs = mlflow_runs(root, "digits_mlp")
        assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
        assert len(output_dirs(root)) == 4  # one folder each, though they started in the same second
        assert all(loss_steps(root, r.info.run_id) == [0, 1] and "test_accuracy" in r.data.metrics for r in runs)


@pytest.mark.slow
def test_server_killed_in_epoch_2_and_back_30_s_later_the_run_finishes_complete(outages: dict[str, Future[None]]) -> None:
    outages["test_server_killed_in_epoch_2_and_back_30_s_later_the_run_finishes_complete"].result(timeout=900)


@pytest.mark.slow
def test_server_gone_for_good_the_job_exits_75_and_resume_delivers_the_whole_run(outages: dict[str, Future[None]]) -> None:
    outages["test_server_gone_for_good_the_job_exits_75_and_resume_delivers_the_whole_run"].result(timeout=900)
