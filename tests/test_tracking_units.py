"""In-process tests of what a run records and how recorded runs are read back: plot data, per-epoch metrics, long params,
git tags, backfill after a crash, the sweep's parent run, run lookup by folder or id prefix, and `runs` ranking and diffing
on runs fabricated with MlflowClient (no training)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from omegaconf import OmegaConf

from expkit import runs
from expkit.errors import ExpkitError
from expkit.models.builder import build_model
from expkit.outputs import find_run_dir
from expkit.tracking import plots, query, ranking, sqlite_runs, tensorboard
from expkit.tracking.epochs import EpochLogger
from expkit.tracking.facts import git_state
from expkit.tracking.parent import SWEEP_ENV, Handoff, handoff
from expkit.tracking.recorder import ChildRun, MlflowRecorder
from expkit.tracking.run import MAX_PARAM_LENGTH, TrackedRun
from expkit.tracking.store import TABLE_VIEW_TAG, ParentRunUnavailable, await_parent, publish_parent
from expkit.tracking.sweep import PARENT_RUN_FILE, SweepTrackingCallback
from expkit.training.compile import compile_model
from tests.fabricate import FakeStore, add_run, expkit_params, make_store, run_ids_starting_with, with_experiment

# --- plot data --------------------------------------------------------------------------------


def test_ema_smoothing() -> None:
    assert plots.ema([], 0.9) == []
    assert plots.ema([4.0, 0.0, 8.0], 0.5) == [4.0, 2.0, 5.0]  # 4; 0.5*4 + 0.5*0; 0.5*2 + 0.5*8
    assert plots.ema([1.0, 3.0], 0.0) == [1.0, 3.0]
    np.testing.assert_allclose(plots.ema([10.0, 0.0, 0.0], 0.9), [10.0, 9.0, 8.1])


def test_learning_curves_draw_one_figure_per_metric_not_per_extra(tmp_path: Path) -> None:
    history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8], "learning_rate": [0.1, 0.1], "epoch_time_s": [1, 1]}
    paths = plots.learning_curves(history, tmp_path, smoothing=0.6)
    assert sorted(p.name for p in paths) == ["accuracy.png", "loss.png"]


# --- a real MLflow store, shared by the tests below --------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FakeStore:
    return make_store(tmp_path_factory.mktemp("store"), "units")


def tracked_run(store: FakeStore, root: Path) -> TrackedRun:
    return TrackedRun(uri=store.uri, root_dir=str(root), experiment_name="units", artifact_dir=str(store.root / "mlartifacts"))


# --- per-epoch metrics (EpochLogger) -----------------------------------------------------------


def test_epoch_logger_records_metrics_learning_rate_and_epoch_time(store: FakeStore) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)).astype(np.float32), rng.integers(0, 2, 40)
    model = build_model([{"type": "Dense", "units": 2, "activation": "softmax"}], (3,))
    schedule = {"type": "ExponentialDecay", "initial_learning_rate": 0.1, "decay_steps": 5, "decay_rate": 0.5}
    compile_model(model, {"type": "SGD", "learning_rate": schedule}, "sparse_categorical_crossentropy", ["accuracy"])
    run_id = store.client.create_run(store.experiment_id).info.run_id
    started = time.perf_counter()
    history = model.fit(x, y, epochs=3, batch_size=10, verbose=0, callbacks=[EpochLogger(ChildRun(store.client, run_id))]).history
    elapsed = time.perf_counter() - started

    def logged(key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in store.client.get_metric_history(run_id, key))

    assert logged("loss") == [(e, pytest.approx(v)) for e, v in enumerate(history["loss"])]
    assert [s for s, _ in logged("accuracy")] == [0, 1, 2]
    # 4 steps per epoch: the learning rate after epoch e is 0.1 * 0.5 ** (4 (e + 1) / 5).
    assert logged("learning_rate") == [(e, pytest.approx(0.1 * 0.5 ** (4 * (e + 1) / 5), rel=1e-5)) for e in range(3)]
    times = logged("epoch_time_s")
    assert [s for s, _ in times] == [0, 1, 2] and all(t > 0 for _, t in times)
    assert sum(t for _, t in times) <= elapsed  # each epoch's own duration, not time since the run started


# --- TrackedRun: tags, long params, backfill ----------------------------------------------------


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def at_once(calls: list[Callable[[], object]]) -> list[BaseException]:
    """Run the calls in threads released together by a barrier; the exceptions they raised."""
    barrier = threading.Barrier(len(calls))
    failures: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        barrier.wait()
        try:
            call()
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def test_parallel_runs_logging_one_dataset_all_record_it(tmp_path: Path) -> None:
    """A sweep's jobs log the same dataset at once: MLflow's look-up-then-insert let one of them fail (a Ray sweep did)."""
    store = make_store(tmp_path, "race")
    tracked = [tracked_run(store, tmp_path) for _ in range(4)]
    for t in tracked:
        t.create("job", {})
    failures: list[BaseException] = []
    for round_ in range(5):  # a fresh dataset each round: every round races to insert it
        failures += at_once(
            [
                lambda t=t, d=f"digest{round_}": t.log_dataset("mnist", "/data/mnist.npz", d, {"train": 10}, np.zeros((1, 3)))
                for t in tracked
            ]
        )
    assert failures == []
    client = mlflow.MlflowClient(store.uri)
    for t in tracked:
        assert sorted(d.dataset.digest for d in client.get_run(t.run_id).inputs.dataset_inputs) == [f"digest{i}" for i in range(5)]


def test_parallel_runs_of_a_new_experiment_all_add_their_table_columns(tmp_path: Path) -> None:
    """A sweep's first jobs finish together: each adds its columns to the experiment's table view, which none has yet."""
    store = make_store(tmp_path, "first")
    failures: list[BaseException] = []
    for round_ in range(4):  # a new experiment each round: its view tag does not exist yet
        tracked = [
            TrackedRun(uri=store.uri, root_dir=str(tmp_path), experiment_name=f"new{round_}", artifact_dir=str(tmp_path / "a"))
            for _ in range(8)
        ]
        for t in tracked:
            t.create("job", {})
        recorders = [MlflowRecorder(t, output_dir=tmp_path) for t in tracked]
        failures += at_once([lambda r=r: r.show_in_table(["objective"], []) for r in recorders])
        experiment = store.client.get_experiment_by_name(f"new{round_}")
        assert "metrics.`objective`" in json.loads(experiment.tags[TABLE_VIEW_TAG])["selectedColumns"]
    assert failures == []


def test_git_state_of_a_repo_and_of_a_plain_folder(tmp_path: Path) -> None:
    assert git_state(str(tmp_path)) == {}
    git(tmp_path, "init", "-q")
    (tmp_path / "train.py").write_text("print(1)\n")
    git(tmp_path, "add", "train.py")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "first")
    assert git_state(str(tmp_path)) == {"git.commit": git(tmp_path, "rev-parse", "HEAD"), "git.dirty": "false"}
    (tmp_path / "train.py").write_text("print(2)\n")
    assert git_state(str(tmp_path))["git.dirty"] == "true"


def test_tracked_run_tags_long_params_and_backfill(store: FakeStore, tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "first")
    run = tracked_run(store, tmp_path)
    long_value = "x" * (MAX_PARAM_LENGTH + 1)
    try:
        run.start("units run", {"preset": "none"})
        run_id = run.run_id
        run.log_params({"model": {"units": 64, "note": long_value}}, {"model.num_params": 123})
        # A crash after epoch 3's state was saved but before MLflow got epochs 2 and 3.
        run.log_metrics({"loss": 0.9, "val_loss": 1.0}, step=0)
        run.log_metrics({"loss": 0.7, "val_loss": 0.8}, step=1)
        history = {"loss": [0.9, 0.7, 0.5, 0.4, 0.3], "val_loss": [1.0, 0.8, 0.6, 0.55, 0.5]}
        run.backfill(history, last_epoch=3)
    finally:
        run.end()
    client = store.client
    data = client.get_run(run_id).data
    assert data.tags["git.commit"] == git(tmp_path, "rev-parse", "HEAD") and data.tags["git.dirty"] == "false"
    assert data.tags["preset"] == "none" and data.tags["keras.version"] == keras.__version__
    assert data.params["model.units"] == "64" and data.params["model.num_params"] == "123"
    assert data.params["model.note"] == "<see artifact params/model.note.txt>"
    assert mlflow.artifacts.load_text(f"{client.get_run(run_id).info.artifact_uri}/params/model.note.txt") == long_value
    for key in ("loss", "val_loss"):
        logged = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        assert logged == [(e, pytest.approx(v)) for e, v in enumerate(history[key][:4])]  # epochs 0..3, each once
    assert client.get_run(run_id).info.status == "FINISHED"


# A job's process before it imports TensorFlow: its run is created by expkit.tracking.opener, in a process of its own.
JOB = """
import json, sys
from pathlib import Path
from expkit.tracking.run import TrackedRun

uri, root = sys.argv[1], Path(sys.argv[2])
run = TrackedRun(uri=uri, root_dir=str(root), experiment_name="units", artifact_dir=str(root / "mlartifacts"))
try:
    run.start("opened run", {"preset": "none"}, params={"model": {"units": 8}}, tensorboard_base=root / "tb", overlap=True)
    opened_elsewhere = run._opener is not None
    run.set_tags({"dataset.fingerprint": "abc"})  # before this process opened the store: written once it does
    print(json.dumps({"run_id": run.run_id, "opened_elsewhere": opened_elsewhere, "mlflow_imported": "mlflow" in sys.modules}))
    run.log_metrics({"objective": 0.5})
finally:
    run.end()
"""


def run_job(tmp_path: Path, uri: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "job.py"
    script.write_text(JOB)
    environment = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, str(script), uri, str(tmp_path)], capture_output=True, text=True, env=environment, timeout=120)


@pytest.mark.slow
def test_a_run_opened_by_another_process_gets_params_tags_and_status(store: FakeStore, tmp_path: Path) -> None:
    parent = store.client.create_run(store.experiment_id).info.run_id
    done = run_job(tmp_path, store.uri, {SWEEP_ENV: Handoff(parent_run_id=parent).to_json()})
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout.strip().splitlines()[-1])
    assert reply["opened_elsewhere"] and not reply["mlflow_imported"]  # MLflow's import stayed out of the job's start-up
    run = store.client.get_run(reply["run_id"])
    tags = run.data.tags
    assert run.info.status == "FINISHED" and run.data.metrics["objective"] == 0.5
    assert run.data.params["model.units"] == "8"
    assert tags["preset"] == "none" and tags["mlflow.parentRunId"] == parent and tags["dataset.fingerprint"] == "abc"
    assert tags["tensorboard_dir"] == str(tensorboard.run_folder(tmp_path / "tb", "opened run", reply["run_id"]))
    assert tags["mlflow.source.name"].endswith("job.py")  # the job's program, not the opener


@pytest.mark.slow
def test_a_store_the_opener_cannot_use_is_a_clear_tracking_uri_error(tmp_path: Path) -> None:
    (tmp_path / "broken.db").write_text("not a database\n")
    done = run_job(tmp_path, f"sqlite:///{tmp_path / 'broken.db'}")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-2:]
    assert last[0].startswith("expkit.errors.ExpkitError: tracking.uri: cannot open the MLflow store") and "hint:" in last[1], done.stderr
    assert done.stderr.count("Traceback") == 1  # the job's own (it does not catch the error); none from the opener


@pytest.mark.parametrize("request_text", ["", '{"uri": "sqlite:///x.db", "run_na'])
def test_the_opener_ends_quietly_when_the_job_stopped_before_sending_its_request(request_text: str, tmp_path: Path) -> None:
    """A Ctrl-C can stop the job between starting the opener and handing it the request: no run, no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "expkit.tracking.opener"], input=request_text, capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (1, "", "")
    assert not list(tmp_path.iterdir())  # no store was created


# --- the sweep's parent run (tracking/sweep.py) -----------------------------------------------------


def sweep_config(store: FakeStore) -> object:
    return OmegaConf.create(
        {
            "name": "units",
            "paths": {"root_dir": str(store.root)},
            "tracking": {"enabled": True, "uri": store.uri, "experiment_name": "units", "artifact_dir": str(store.root / "mlartifacts")},
            "hydra": {"overrides": {"task": ["optimizer.learning_rate=0.1,0.01,0.001"]}, "sweep": {"dir": str(store.root / "sweep")}},
            "objective": {"metric": "val_loss", "mode": "min", "at": "best"},
        }
    )


def add_child(store: FakeStore, parent_id: str, lr: str, status: str, losses: tuple[float, float] | None) -> str:
    metrics = {"objective": losses[0], "val_loss": losses[0], "test_loss": losses[1], "test_accuracy": 1 - losses[1]} if losses else {}
    tags = {"mlflow.parentRunId": parent_id}
    return add_run(store, name=f"lr={lr}", params={"optimizer.learning_rate": lr}, metrics=metrics, tags=tags, status=status).info.run_id


@pytest.mark.parametrize("failing_child", [False, True])
def test_sweep_parent_gets_tags_best_metrics_and_status(store: FakeStore, monkeypatch: pytest.MonkeyPatch, failing_child: bool) -> None:
    monkeypatch.setenv(SWEEP_ENV, "")  # unset again after the test
    callback, config = SweepTrackingCallback(), sweep_config(store)
    callback.on_multirun_start(config)
    parent_id = callback.parent_id
    assert parent_id and handoff().parent_run_id == parent_id and handoff().overrides == ("optimizer.learning_rate=0.1,0.01,0.001",)
    parent = store.client.get_run(parent_id)
    assert parent.data.tags["expkit.sweep"] == "parent" and parent.info.status == "RUNNING"
    assert parent.data.tags["sweep.overrides"] == "optimizer.learning_rate=0.1,0.01,0.001"
    # The best child by the objective (its validation score); test metrics are only reported on the parent.
    best = add_child(store, parent_id, "0.01", "FINISHED", (0.20, 0.25))
    add_child(store, parent_id, "0.1", "FINISHED", (0.40, 0.45))
    if failing_child:
        add_child(store, parent_id, "0.001", "FAILED", None)
    callback.on_multirun_end(config)

    parent = store.client.get_run(parent_id)
    assert parent.data.tags["sweep.num_jobs"] == ("3" if failing_child else "2")
    assert parent.data.tags["sweep.num_failed"] == ("1" if failing_child else "0")
    assert parent.data.tags["sweep.best_run_id"] == best and parent.data.tags["sweep.objective.metric"] == "val_loss"
    assert parent.data.metrics["best/objective"] == pytest.approx(0.20)
    assert parent.data.metrics["best/test_loss"] == pytest.approx(0.25) and parent.data.metrics["best/val_loss"] == pytest.approx(0.20)
    assert parent.info.status == "FINISHED"  # one failed job does not fail the sweep (sweep.max_failure_rate is unset)
    assert SWEEP_ENV not in os.environ


def test_a_sweep_whose_every_job_failed_ends_failed_and_aborts(store: FakeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit status: the CLI turns SweepAborted into exit 1, so a script never reads an all-failed sweep as success."""
    from expkit.selection.objective import SweepAborted

    monkeypatch.setenv(SWEEP_ENV, "")  # unset again after the test
    callback, config = SweepTrackingCallback(), sweep_config(store)
    callback.on_multirun_start(config)
    assert callback.parent_id
    for lr in ("0.1", "0.01"):
        add_child(store, callback.parent_id, lr, "FAILED", None)
    with pytest.raises(SweepAborted, match=r"every job of the sweep failed \(2 of 2\)"):
        callback.on_multirun_end(config)
    assert store.client.get_run(callback.parent_id).info.status == "FAILED"


def test_sweep_callback_does_nothing_without_tracking(store: FakeStore) -> None:
    callback = SweepTrackingCallback()
    config = sweep_config(store)
    config.tracking.enabled = False
    callback.on_multirun_start(config)
    callback.on_multirun_end(config)
    assert callback.parent_id is None


def test_a_joblib_sweep_creates_its_parent_while_jobs_start_and_jobs_read_its_id(
    store: FakeStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Under joblib the parent run is created in a thread; a job that asks before it exists waits for the published id."""
    monkeypatch.setenv(SWEEP_ENV, "")  # unset again after the test
    callback, config = SweepTrackingCallback(), sweep_config(store)
    config.hydra.launcher = {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"}
    callback.on_multirun_start(config)  # returns at once: the job below asks for the parent while it is being created
    assert handoff().parent_file == str(store.root / "sweep" / PARENT_RUN_FILE)
    job = tracked_run(store, tmp_path)
    job.create("lr=0.1", {"overrides": "optimizer.learning_rate=0.1"})
    callback.wait_for_parent()
    assert callback.parent_id and job.client.get_run(job.run_id).data.tags["mlflow.parentRunId"] == callback.parent_id
    assert handoff().parent_run_id == callback.parent_id  # for closing the parent if the sweep is interrupted
    callback.on_multirun_end(config)
    assert store.client.get_run(callback.parent_id).info.status == "FINISHED"
    assert not (store.root / "sweep" / PARENT_RUN_FILE).exists() and SWEEP_ENV not in os.environ


def test_a_joblib_sweep_with_a_broken_store_stops_its_jobs_quietly_and_reports_once(
    store: FakeStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from expkit.tracking.sweep import SweepStoreError

    monkeypatch.setenv(SWEEP_ENV, "")  # unset again after the test
    (tmp_path / "broken.db").write_text("not a database\n")
    config = sweep_config(store)
    config.tracking.uri = f"sqlite:///{tmp_path / 'broken.db'}"
    config.hydra.launcher = {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"}
    callback = SweepTrackingCallback()
    callback.on_multirun_start(config)  # no error yet: the jobs learn it from the published reply
    with pytest.raises(ParentRunUnavailable, match="cannot open the MLflow store"):
        await_parent(Path(str(handoff().parent_file)))
    with pytest.raises(SweepStoreError, match=r"tracking\.uri: cannot open the MLflow store") as stopped:
        callback.on_multirun_end(config)
    assert stopped.value.exit_code == 2 and "hint:" in str(stopped.value)


def test_await_parent_gives_up_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExpkitError, match="parent run was not created within 0 s"):
        await_parent(tmp_path / "never.json", timeout_s=0.05)
    publish_parent(tmp_path / "p.json", "abc123")
    assert await_parent(tmp_path / "p.json") == "abc123"


# --- finding a run: by folder, by id prefix -------------------------------------------------------


def run_folder(root: Path, stamp: str, run_id: str, finished: bool = False) -> Path:
    folder = root / "outputs" / "digits_mlp" / "runs" / stamp
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("name: digits_mlp\n")
    (folder / "run_id").write_text(run_id + "\n")
    if finished:
        (folder / "metrics.json").write_text("{}\n")
    return folder


def test_find_run_dir_by_folder_latest_and_id_prefix(tmp_path: Path) -> None:
    first = run_folder(tmp_path, "2026-01-01_10-00-00", "abcdef0011", finished=True)
    second = run_folder(tmp_path, "2026-01-01_11-00-00", "abcdef0022")
    assert find_run_dir(str(first), tmp_path) == first.resolve()  # a folder, even a finished one
    assert find_run_dir("latest", tmp_path) == second  # the newest unfinished run
    assert find_run_dir("abcdef002", tmp_path) == second
    with pytest.raises(ExpkitError, match=r"2 run folders under .* for run id 'abcdef'"):
        find_run_dir("abcdef", tmp_path)
    with pytest.raises(ExpkitError, match="no run folder"):
        find_run_dir("ffffff", tmp_path)
    with pytest.raises(ExpkitError, match="is not an expkit run folder"):
        find_run_dir(str(tmp_path), tmp_path)


def test_find_run_rejects_an_ambiguous_prefix(store: FakeStore) -> None:
    store = with_experiment(store, "prefixes")
    with run_ids_starting_with("c0ffee"):
        ids = [add_run(store, name=f"r{i}", params={}, metrics={"test_loss": 1.0}).info.run_id for i in range(2)]
    assert all(i.startswith("c0ffee") for i in ids) and ids[0] != ids[1]
    with pytest.raises(ExpkitError, match=r"run id prefix 'c0ffee' is ambiguous: it matches 2 runs") as info:
        query.find_run(store.client, store.uri, "C0FFEE")
    assert ids[0] in str(info.value) and ids[1] in str(info.value)
    assert query.find_run(store.client, store.uri, ids[1][:10]).info.run_id == ids[1]


# --- `runs` ranking and diffing on fabricated runs --------------------------------------------------

# Three runs, oldest first. test_loss and test_accuracy rank them the same way, and neither follows the start order.
FABRICATED = [
    ("0.1", {"test_loss": 0.50, "test_accuracy": 0.85, "val_loss": 0.52, "objective": 0.52}),
    ("0.01", {"test_loss": 0.20, "test_accuracy": 0.95, "val_loss": 0.22, "objective": 0.22}),
    ("0.001", {"test_loss": 0.70, "test_accuracy": 0.80, "val_loss": 0.71, "objective": 0.71}),
]


@pytest.fixture(scope="module")
def ranked_store(store: FakeStore) -> tuple[FakeStore, dict[str, str]]:
    store = with_experiment(store, "digits_mlp")
    ids = {}
    for i, (lr, metrics) in enumerate(FABRICATED):
        params = expkit_params(lr, f"/runs/{i}")
        tags = {"overrides": f"optimizer.learning_rate={lr}", "preset": "default"}
        start = 1_700_000_000_000 + i
        ids[lr] = add_run(store, name=f"digits_mlp lr={lr}", params=params, metrics=metrics, tags=tags, start_time=start).info.run_id
    add_run(store, name="crashed", params=expkit_params("0.5", "/runs/x"), metrics={"test_loss": 0.01}, status="FAILED")
    return store, ids


def test_rank_orders_best_first_in_both_directions(ranked_store: tuple[FakeStore, dict[str, str]]) -> None:
    store, ids = ranked_store
    found = [store.client.get_run(ids[lr]) for lr, _ in FABRICATED]
    by_loss = [r.info.run_id for r in ranking.rank(found, "test_loss", "min")]
    by_accuracy = [r.info.run_id for r in ranking.rank(found, "test_accuracy", ranking.resolve_mode("test_accuracy", "auto"))]
    assert by_loss == by_accuracy == [ids["0.01"], ids["0.1"], ids["0.001"]]
    assert [r.info.run_id for r in ranking.rank(found, "test_loss", "max")] == [ids["0.001"], ids["0.1"], ids["0.01"]]
    assert ranking.resolve_mode("val_loss", "auto") == "min" and ranking.resolve_mode("val_auc", "auto") == "max"
    # Runs without the metric go last, in their order.
    assert ranking.rank([found[2], found[0]], "nope", "min") == [found[2], found[0]]


def test_differing_params_ignore_run_locations(ranked_store: tuple[FakeStore, dict[str, str]]) -> None:
    store, ids = ranked_store
    found = [store.client.get_run(i) for i in ids.values()]
    assert ranking.differing_params(found) == ["optimizer.learning_rate"]
    assert ranking.differing_params(found[:1]) == []


def test_compare_and_best_print_the_best_run_first(ranked_store: tuple[FakeStore, dict[str, str]], capsys: pytest.CaptureFixture) -> None:
    store, ids = ranked_store
    runs.compare_runs(run_ids=[ids["0.1"][:8], ids["0.001"], ids["0.01"][:7]], sweep=None, metric=None, mode="auto", uri=store.uri)
    out = capsys.readouterr().out
    assert out.startswith("3 runs, best first by objective (min); 1 param(s) differ")  # the validation score, never a test metric
    rows = [line.split() for line in out.splitlines()[3:6]]
    assert [row[0] for row in rows] == [ids["0.01"][:8], ids["0.1"][:8], ids["0.001"][:8]]
    assert [row[3] for row in rows] == ["0.01", "0.1", "0.001"]  # the learning-rate column

    runs.best_run(experiment="digits_mlp", metric="test_accuracy", mode="auto", uri=store.uri)
    out = capsys.readouterr().out
    assert out.startswith("best of 3 finished run(s) in 'digits_mlp' by test_accuracy (max):")  # the FAILED run is not a candidate
    assert re.search(rf"^  run id +{ids['0.01']}$", out, re.M) and re.search(r"^  test_accuracy +0\.9500$", out, re.M)
    assert re.search(r"^  overrides +optimizer\.learning_rate=0\.01$", out, re.M)


def test_runs_list_reads_sqlite_directly_with_the_same_runs_as_mlflow(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = make_store(tmp_path, "digits_mlp")
    for i, (lr, metrics) in enumerate(FABRICATED):
        add_run(store, name=f"lr={lr}", params=expkit_params(lr, f"/runs/{i}"), metrics=metrics, tags={"preset": "default"})
    other = with_experiment(store, "other")
    add_run(other, name="elsewhere", params={}, metrics={"test_mae": 2.5}, status="FAILED")
    deleted = add_run(store, name="deleted", params={}, metrics={"test_loss": 0.1})
    store.client.delete_run(deleted.info.run_id)
    nan_run = add_run(store, name="diverged", params={}, metrics={"test_loss": float("nan")}, tags={"mlflow.parentRunId": "p" * 32})

    read = sqlite_runs.read_sqlite_runs(store.uri, None, limit=100)
    assert read is not None
    names, direct = read
    assert names == {e.experiment_id: e.name for e in query.experiments(store.client)}
    through_mlflow = query.search_all(store.client, list(names), limit=100)
    assert len(direct) == 5 and [r.info.run_id for r in direct] == [r.info.run_id for r in through_mlflow]  # newest first
    assert deleted.info.run_id not in {r.info.run_id for r in direct}
    for mine, theirs in zip(direct, through_mlflow, strict=True):
        assert (mine.info.run_name, mine.info.status, mine.info.start_time, mine.info.experiment_id) == (
            theirs.info.run_name,
            theirs.info.status,
            theirs.info.start_time,
            theirs.info.experiment_id,
        )
        assert mine.data.tags == theirs.data.tags
        assert mine.data.metrics.keys() == theirs.data.metrics.keys()
        assert all(ranking.metric_of(mine, k) == ranking.metric_of(theirs, k) for k in mine.data.metrics)
    assert ranking.metric_of(next(r for r in direct if r.info.run_id == nan_run.info.run_id), "test_loss") is None
    # One experiment by name with a limit; an unknown name and a server are left to MLflow's path.
    _, newest = sqlite_runs.read_sqlite_runs(store.uri, "digits_mlp", limit=2) or ({}, [])
    assert [r.info.run_id for r in newest] == [r.info.run_id for r in through_mlflow if r.info.run_name != "elsewhere"][:2]
    assert sqlite_runs.read_sqlite_runs(store.uri, "no such experiment", limit=5) is None
    assert sqlite_runs.read_sqlite_runs("http://127.0.0.1:5000", None, limit=5) is None
    runs.list_runs(experiment="digits_mlp", uri=store.uri, limit=3)
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:6] == ["run", "id", "experiment", "name", "status", "started"]
    assert "diverged" in out and "elsewhere" not in out and "3 run(s), newest first" in out
