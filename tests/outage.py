"""The tracking server goes away while a job trains (expkit.tracking.outage): the job keeps training, and every epoch
reaches the same run, once, whether the server comes back during the job or only for a later `expkit resume`.

Two scenarios as plain functions; their tests (tests/test_reliability.py) run them in background threads while that
file's other tests run, since both mostly wait (paced epochs, a server kept away for 30 s). They take the environment
for their processes as an argument: the main thread's in-process commands change `os.environ` meanwhile."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import mlflow

from tests import mlflow_server as ms
from tests.conftest import output_dirs

EPOCHS = 6
EPOCH_METRICS = {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_time_s"}
FAST = ("trainer.verbose=0", "tracking.log_model=false", "tracking.tensorboard.enabled=false", "dataset.max_train_samples=300")


def start_server(root: Path, port: int, env: dict[str, str]) -> ms.ServerProcess:
    server = ms.start_mlflow_server(f"sqlite:///{root / 'mlflow.db'}", root / "mlartifacts", cwd=root, env=env, port=port)
    ms.wait_healthy(server, timeout=180)
    return server


def kill(server: ms.ServerProcess) -> None:
    """The server dies at once (SIGKILL to its whole process group): no goodbye to its clients."""
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(30)


def train(workdir: Path, url: str, seconds: float, wait_s: float, env: dict[str, str]) -> subprocess.Popen[str]:
    args = [
        "train", f"trainer.epochs={EPOCHS}", *FAST, f"tracking.uri={url}", "tracking.experiment_name=outage",
        f"tracking.server_wait_s={wait_s}",
        f"+callbacks.pace={{_target_: tests.paced.PacedEpochs, seconds: {seconds}, folder: '{workdir / 'epochs'}'}}",
    ]  # fmt: skip
    command = [sys.executable, "-m", "expkit.cli", *args]
    return subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.2)


def wait_until_epoch_1_is_logged(url: str, job: subprocess.Popen[str], timeout: float = 300) -> None:
    """Epoch 2 is under way and epoch 1 is in the store: the moment to pull the plug."""
    deadline = time.monotonic() + timeout
    while True:
        assert job.poll() is None, job.communicate()
        assert time.monotonic() < deadline, "epoch 1 was not logged"
        try:
            runs = ms.search_runs(url, "outage")
        except Exception:  # the experiment does not exist yet
            runs = []
        if any("loss" in ms.as_dict(r["data"].get("metrics")) for r in runs):
            return
        time.sleep(0.2)


def assert_complete(root: Path) -> mlflow.entities.Run:
    """One FINISHED run in the store with every per-epoch metric at steps 0..5, each exactly once, and its plots."""
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("outage").experiment_id])
    assert len(runs) == 1, [r.info for r in runs]
    run = runs[0]
    assert run.info.status == "FINISHED", run.info
    assert set(run.data.metrics) >= EPOCH_METRICS, sorted(run.data.metrics)
    for key in run.data.metrics:
        steps = Counter(m.step for m in client.get_metric_history(run.info.run_id, key))
        assert max(steps.values()) == 1, (key, steps)  # no step twice
        if key in EPOCH_METRICS:
            assert sorted(steps) == list(range(EPOCHS)), (key, sorted(steps))
    assert "test_accuracy" in run.data.metrics
    assert list(root.glob(f"mlartifacts/*/{run.info.run_id}/artifacts/plots/loss.png"))  # uploaded through the server's proxy
    return run


def killed_in_epoch_2(
    workdir: Path, env: dict[str, str], *, seconds: float, wait_s: float
) -> tuple[Path, int, ms.ServerProcess, subprocess.Popen[str]]:
    """A server on a new store, a paced job logging to it, and the server killed once epoch 1 is stored and epoch 2 runs:
    (server folder, port, the killed server, the job). On a failure here the job is killed too."""
    root = workdir / "server"
    root.mkdir()
    port = ms.free_port()
    server = start_server(root, port, env)
    job = train(workdir, server.url, seconds=seconds, wait_s=wait_s, env=env)
    try:
        wait_for(workdir / "epochs" / "epoch-2", job)
        wait_until_epoch_1_is_logged(server.url, job)
        kill(server)
    except BaseException:
        ms.stop(server)
        job.kill()
        raise
    return root, port, server, job


def server_back_30_s_later(workdir: Path, env: dict[str, str]) -> None:
    """The server is killed in epoch 2 and started again 30 s later on the same store and address: the job keeps
    training meanwhile, and its run ends FINISHED with every epoch once."""
    root, port, server, job = killed_in_epoch_2(workdir, env, seconds=6, wait_s=300)
    try:
        assert not (workdir / "epochs" / "epoch-3").exists()  # killed during epoch 2
        time.sleep(30)
        assert job.poll() is None  # still training
        server = start_server(root, port, env)  # the same store, the same address
        _out, err = job.communicate(timeout=600)
    finally:
        ms.stop(server)
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0, err[-4000:]
    assert "unreachable: training goes on" in err and "is back: delivered epoch(s)" in err, err[-3000:]
    assert_complete(root)


def server_gone_for_good(workdir: Path, env: dict[str, str]) -> None:
    """The server is killed in epoch 2 and stays away: the job trains to the end, exits 75, and `expkit resume` (with
    the server back) delivers the whole run. Its checks fail the test that waits for it."""
    root, port, server, job = killed_in_epoch_2(workdir, env, seconds=3, wait_s=5)
    try:
        _out, err = job.communicate(timeout=600)
    finally:
        ms.stop(server)
        if job.poll() is None:
            job.kill()
    assert job.returncode == 75, err[-4000:]  # README: "the tracking server stayed unreachable"
    assert "expkit resume" in err and "Traceback" not in err, err[-3000:]
    (run_dir,) = output_dirs(workdir)
    assert (run_dir / "undelivered_metrics.jsonl").is_file() and (run_dir / "checkpoints" / "resume" / "state.json").is_file()
    epochs = (workdir / "epochs").glob("epoch-*")
    assert len(list(epochs)) == EPOCHS  # it trained to the end

    server = start_server(root, port, env)
    try:
        command = [sys.executable, "-m", "expkit.cli", "resume", str(run_dir)]
        resumed = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
        assert resumed.returncode == 0, resumed.stderr[-4000:]
        run = assert_complete(root)
    finally:
        ms.stop(server)
    assert run.info.run_id == (run_dir / "run_id").read_text().strip()  # the same run, continued
