"""Model selection: one objective (direction, best/last epoch), resume keeps the best by the right direction,
a sweep's parent picks its best child by the objective (never test), failing jobs do not end a sweep, export."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path
from typing import Any

import mlflow
import pytest

from expkit.errors import ExpkitError
from expkit.selection.objective import Objective, direction
from tests.conftest import REPO, run_expkit, run_inprocess

FAST = ("trainer.verbose=0", "tracking.log_model=false", "tracking.tensorboard.enabled=false")


# ---------------------------------------------------------------- the objective (pure Python)


def test_direction_is_max_for_accuracy_like_metrics_and_min_otherwise() -> None:
    assert direction("val_accuracy") == "max"
    assert direction("val_auc") == "max"
    assert direction("val_loss") == "min"
    assert direction("val_mae") == "min"
    assert direction("val_loss", "max") == "max"


def test_objective_scores_best_or_last_epoch_in_its_direction() -> None:
    history = {"val_accuracy": [0.5, 0.9, 0.7], "val_loss": [1.0, 0.4, 0.6]}
    assert Objective.create("val_accuracy").score(history) == 0.9
    assert Objective.create("val_accuracy", at="last").score(history) == 0.7
    assert Objective.create("val_loss").score(history) == 0.4
    assert Objective.create("val_loss").best_epoch(history["val_loss"]) == 1
    assert Objective.create("val_loss").best_epoch([math.nan, 2.0, 1.0]) == 2


def test_objective_refuses_test_metrics_and_missing_validation() -> None:
    with pytest.raises(ExpkitError, match="test data never chooses"):
        Objective.create("test_accuracy")
    with pytest.raises(ExpkitError, match="needs validation data"):
        Objective.create("val_loss").score({"loss": [1.0]})


def test_rank_puts_best_first_and_missing_last() -> None:
    accuracy = Objective.create("val_accuracy")
    assert accuracy.rank([("a", 0.7), ("b", None), ("c", 0.9), ("d", math.nan)]) == ["c", "a", "b", "d"]
    assert Objective.create("val_loss").rank([("a", 0.7), ("c", 0.2)]) == ["c", "a"]


def test_config_rejects_a_test_objective_and_folds_with_holdout(tmp_path: Path) -> None:
    from expkit.config import validate_config
    from expkit.config.overrides import check_overrides

    def check(*overrides: str) -> Any:
        return validate_config(check_overrides([f"paths.output_dir={tmp_path}", *overrides]))

    with pytest.raises(ExpkitError, match="test metric"):
        check("objective.metric=test_loss")
    with pytest.raises(ExpkitError, match="folds"):
        check("dataset.validation.folds=4")  # digits already holds out 0.2
    assert check("dataset.validation.holdout=null", "dataset.validation.folds=3").protocol == "kfold"


# ---------------------------------------------------------------- resume keeps the best of a maximised metric


@pytest.mark.slow
def test_kill_9_then_resume_keeps_the_highest_val_accuracy_checkpoint(workdir: Path) -> None:
    """Regression: resume used to keep the lowest value, so a worse epoch could overwrite best.keras."""
    import keras

    from tests.fake_metric import weights_fingerprint

    record = workdir / "weights.json"
    marker = workdir / "killed"
    fake = (
        f"+callbacks.fake={{_target_: tests.fake_metric.FixedMetric, name: val_accuracy, values: [0.5, 0.9, 0.7, 0.6], record: '{record}'}}"
    )
    crash = f"+callbacks.crash={{_target_: tests.crash.SignalSelf, epoch: 2, signum: {int(signal.SIGKILL)}, marker: '{marker}'}}"
    args = ("train", "trainer.epochs=4", "trainer.checkpoint_monitor=val_accuracy", "dataset.max_train_samples=300", fake, crash, *FAST)
    crashed = run_expkit(*args, cwd=workdir, PYTHONPATH=str(REPO))
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    resumed = run_inprocess("resume", cwd=workdir, PYTHONPATH=str(REPO))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (run_dir,) = [p.parent for p in (workdir / "outputs").rglob("run_id")]
    fingerprints = json.loads(record.read_text())
    best = keras.models.load_model(run_dir / "checkpoints" / "best.keras", compile=False)
    assert weights_fingerprint(best) == pytest.approx(fingerprints["1"]), "best.keras must hold epoch 2 (val_accuracy 0.9)"
    state = json.loads((run_dir / "checkpoints" / "resume" / "state.json").read_text())
    assert state["best"] == 0.9


# ---------------------------------------------------------------- the sweep parent picks by the objective


def test_parent_tags_the_objective_best_child_where_test_disagrees(tmp_path: Path) -> None:
    """Four fabricated lr children whose test ranking is the reverse of their validation ranking."""
    from expkit.tracking.parent import ParentRun
    from tests.fabricate import make_store

    store = make_store(tmp_path, "grid")  # a new store as expkit creates it (seeded, not migrated)
    client, experiment = store.client, store.experiment_id
    parent = client.create_run(experiment, run_name="grid sweep").info.run_id
    children = {}
    for lr, val_accuracy, test_accuracy in (("1e-4", 0.80, 0.95), ("1e-3", 0.92, 0.81), ("1e-2", 0.85, 0.90), ("1e-1", 0.50, 0.99)):
        run = client.create_run(experiment, run_name=lr, tags={"mlflow.parentRunId": parent, "overrides": f"optimizer.learning_rate={lr}"})
        for key, value in (("objective", val_accuracy), ("val_accuracy", val_accuracy), ("test_accuracy", test_accuracy)):
            client.log_metric(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id, "FINISHED")
        children[lr] = run.info.run_id
    ParentRun(client, parent).log_best(Objective.create("val_accuracy"))
    tags = client.get_run(parent).data.tags
    assert tags["sweep.best_run_id"] == children["1e-3"]  # best on validation; test would have picked 1e-1
    assert tags["sweep.objective.metric"] == "val_accuracy"
    assert tags["sweep.objective.mode"] == "max"
    assert client.get_run(parent).data.metrics["best/objective"] == 0.92


# ---------------------------------------------------------------- failure-tolerant sweeps, export


@pytest.mark.slow
def test_grid_with_an_invalid_and_a_diverging_point_finishes_the_rest(workdir: Path) -> None:
    done = run_inprocess(
        "train",
        "-m",
        "trainer.epochs=2",
        "optimizer=sgd",
        "optimizer.learning_rate=-1,1e30,0.01",
        "dataset.max_train_samples=300",
        *FAST,
        cwd=workdir,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("digits_mlp").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("expkit.sweep") == "parent"]
    children = {r.data.tags["overrides"].split("optimizer.learning_rate=")[1].split()[0]: r for r in runs if r is not parent}
    assert parent.info.status == "FINISHED"
    assert children["0.01"].info.status == "FINISHED"
    assert children["-1"].info.status == "FAILED" and "learning_rate" in children["-1"].data.tags["failure"]
    assert children["1e+30"].info.status == "FAILED" and "NaN" in children["1e+30"].data.tags["failure"]
    assert parent.data.tags["sweep.best_run_id"] == children["0.01"].info.run_id
    assert parent.data.tags["sweep.num_failed"] == "2"

    # Export the winner and train it as a preset.
    exported = workdir / "mine" / "experiment" / "winner.yaml"
    best = run_inprocess("runs", "best", "--sweep", parent.info.run_id, "--export", str(exported), cwd=workdir)
    assert best.returncode == 0, best.stderr
    assert "learning_rate: 0.01" in exported.read_text()
    again = run_inprocess("train", "--config-dir", str(workdir / "mine"), "+experiment=winner", "trainer.epochs=1", *FAST, cwd=workdir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "optimizer.learning_rate=0.01" not in again.stderr  # the value came from the preset, not an override
    trained = [r for r in client.search_runs([parent.info.experiment_id]) if r.data.tags.get("preset") == "winner"]
    assert trained and trained[0].data.params["optimizer.learning_rate"] == "0.01"
    assert trained[0].data.params["optimizer.type"] == "SGD"


@pytest.mark.slow
def test_fail_fast_stops_the_sweep_after_the_first_failure(workdir: Path) -> None:
    done = run_inprocess(
        "train", "-m", "sweep.fail_fast=true", "model.units=0,8", "trainer.epochs=1", "dataset.max_train_samples=200", *FAST, cwd=workdir
    )
    assert done.returncode != 0
    assert "fail_fast" in done.stderr and "Traceback" not in done.stderr
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("digits_mlp").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("expkit.sweep") == "parent"]
    assert parent.info.status == "FAILED"
    assert [r.info.status for r in runs if r is not parent] == ["FAILED"]  # units=8 never ran


# ---------------------------------------------------------------- protocols: k-fold and retrain-on-best-epoch


@pytest.mark.slow
def test_kfold_makes_one_child_per_fold_and_scores_the_mean(workdir: Path) -> None:
    args = ("dataset.validation.holdout=null", "dataset.validation.folds=3", "trainer.epochs=2", "dataset.max_train_samples=150")
    done = run_inprocess("train", *args, *FAST, cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("digits_mlp").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    folds = sorted((r for r in runs if r is not parent), key=lambda r: r.data.tags["protocol.fold"])
    assert [r.data.tags["protocol.fold"] for r in folds] == ["1", "2", "3"]  # as the console counts them
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id and r.info.status == "FINISHED" for r in folds)
    scores = [r.data.metrics["objective"] for r in folds]
    metrics = parent.data.metrics
    assert metrics["objective"] == pytest.approx(sum(scores) / 3)
    assert metrics["kfold.val_loss.mean"] == pytest.approx(sum(scores) / 3)
    assert metrics["kfold.val_loss.std"] > 0
    assert not any(k.startswith("test_") for k in metrics), "k-fold scores a configuration; it does not test"
    curve = client.get_metric_history(parent.info.run_id, "kfold_mean_val_loss")
    assert [m.step for m in sorted(curve, key=lambda m: m.step)] == [0, 1]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "plots/kfold")}
    assert "plots/kfold/loss.png" in artifacts


@pytest.mark.slow
def test_retrain_trains_the_best_epoch_count_on_train_plus_val_and_tests_once(workdir: Path) -> None:
    record = workdir / "weights.json"
    values = "[0.9, 0.5, 0.7, 0.8, 0.9, 0.9]"
    fake = f"+callbacks.fake={{_target_: tests.fake_metric.FixedMetric, name: val_loss, values: {values}, record: '{record}'}}"
    done = run_inprocess(
        "train", "protocol=retrain", "trainer.epochs=4", "dataset.max_train_samples=200", fake, *FAST, cwd=workdir, PYTHONPATH=str(REPO)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "best epoch 2" in done.stdout
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("digits_mlp").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    phases = {r.data.tags["protocol.phase"]: r for r in runs if r is not parent}
    assert set(phases) == {"select", "retrain"}
    assert parent.data.metrics["objective"] == 0.5
    assert parent.data.metrics["retrain.epochs"] == 2
    assert "test_loss" in parent.data.metrics and "test_loss" not in phases["select"].data.metrics
    steps = client.get_metric_history(phases["retrain"].info.run_id, "loss")
    assert len(steps) == 2, "the fresh model trains exactly the best epoch count"
