"""The one parent-run implementation (`expkit.tracking.parent`), in-process on a real SQLite MLflow store: a sweep-style
parent with children, a reproduce-style parent whose child is made by a training run, k-fold children, and ending."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from expkit import reproduce
from expkit.reproduce_stats import Attempt, TargetResult
from expkit.reproduce_targets import Band, Target
from expkit.selection.objective import Objective
from expkit.tracking.parent import PARENT_TAG, SWEEP_ENV, Handoff, ParentRun, child_run, hand_off, handed_parent, handoff
from expkit.tracking.recorder import ChildRun
from expkit.tracking.run import TrackedRun
from expkit.tracking.store import TABLE_VIEW_TAG, publish_parent
from expkit.tracking.sweep import end_parent, retire_interrupted
from tests.fabricate import FakeStore, make_store, with_experiment


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> FakeStore:
    return make_store(tmp_path_factory.mktemp("store"), "parents")  # one schema per module: creating one takes seconds


@pytest.fixture
def store(shared: FakeStore, request: pytest.FixtureRequest) -> FakeStore:
    """The shared store, writing to an experiment of this test's own."""
    return with_experiment(shared, request.node.name)


def finished_child(parent: ParentRun, name: str, metrics: dict[str, float], status: str = "FINISHED") -> str:
    run_id = parent.child(name, {"overrides": name})
    for key, value in metrics.items():
        parent.client.log_metric(run_id, key, value)
    parent.client.set_terminated(run_id, status)
    return run_id


def test_a_sweep_parent_nests_its_children_and_tags_the_best_by_the_objective(store: FakeStore) -> None:
    parent = ParentRun.create(store.uri, store.experiment_id, "grid sweep", {"expkit.sweep": "parent"})
    assert parent.status == "RUNNING" and store.client.get_run(parent.run_id).info.run_name == "grid sweep"
    # validation and test disagree: the parent must follow `objective` (validation) only
    best = finished_child(parent, "lr=0.01", {"objective": 0.2, "val_loss": 0.2, "test_loss": 0.9})
    worse = finished_child(parent, "lr=0.1", {"objective": 0.4, "val_loss": 0.4, "test_loss": 0.1})
    failed = finished_child(parent, "lr=1", {}, status="FAILED")

    children = {r.info.run_id: r for r in parent.children()}
    assert set(children) == {best, worse, failed}
    assert all(r.data.tags[PARENT_TAG] == parent.run_id for r in children.values())
    assert children[best].info.run_name == "lr=0.01" and children[best].info.experiment_id == store.experiment_id

    figures = parent.log_best(Objective(metric="val_loss", mode="min"))
    parent.end("FINISHED")
    run = store.client.get_run(parent.run_id)
    assert figures["best"].info.run_id == best and figures["states"]["FAILED"] == 1
    assert run.data.tags["sweep.best_run_id"] == best and run.data.tags["sweep.best_overrides"] == "lr=0.01"
    assert [run.data.tags[f"sweep.num_{k}"] for k in ("jobs", "finished", "failed")] == ["3", "2", "1"]
    assert run.data.metrics["best/objective"] == pytest.approx(0.2) and run.data.metrics["best/test_loss"] == pytest.approx(0.9)
    assert run.info.status == "FINISHED"
    assert "best/objective" in store.client.get_experiment(store.experiment_id).tags[TABLE_VIEW_TAG]


def test_a_parent_with_no_finished_child_names_no_best(store: FakeStore) -> None:
    parent = ParentRun.create(store.uri, store.experiment_id, "sweep", {})
    finished_child(parent, "a", {}, status="FAILED")
    assert parent.log_best(Objective(metric="val_loss", mode="min"))["best"] is None
    run = store.client.get_run(parent.run_id)
    assert "sweep.best_run_id" not in run.data.tags and "best/objective" not in run.data.metrics


def test_a_reproduce_parent_adopts_the_run_a_training_made_under_it(
    store: FakeStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`expkit reproduce` hands its parent's id to each `expkit train`; the run that training creates is its child."""
    parent = reproduce.open_parent(store.uri, store.root, "expkit reproduce --quick")
    assert isinstance(parent, ParentRun)
    made = store.client.get_run(parent.run_id)
    assert made.data.tags["expkit.reproduce"] == "parent" and made.info.run_name.startswith("reproduction ")
    assert store.client.get_experiment(made.info.experiment_id).name == reproduce.EXPERIMENT

    monkeypatch.setenv(SWEEP_ENV, Handoff(parent_run_id=parent.run_id).to_json())  # what reproduce passes to each training
    training = TrackedRun(uri=store.uri, root_dir=str(store.root), experiment_name=reproduce.EXPERIMENT, artifact_dir=str(store.root / "a"))
    training.create("gauss", {})
    training.log_metrics({"test_accuracy": 0.5})
    training.end("FINISHED")

    target = Target(name="gauss", metric="test_accuracy", accept=Band(min=0.9))
    attempt = Attempt(42, 0.5, run_id=training.run_id)
    reproduce.record_child(parent, attempt, target, 0)
    report = tmp_path / "RESULTS.md"
    report.write_text("# results\n")
    reproduce.finish_parent(parent, [TargetResult(target, [attempt])], report, "FAILED")

    (child,) = parent.children()
    assert child.info.run_id == training.run_id and child.data.tags[PARENT_TAG] == parent.run_id
    assert child.info.run_name == "gauss seed=42" and child.data.tags["reproduce.target"] == "gauss"
    done = store.client.get_run(parent.run_id)
    assert done.info.status == "FAILED" and done.data.tags["verdict.gauss"] == "FAIL"
    assert done.data.metrics["gauss.mean"] == pytest.approx(0.5) and done.data.metrics["gauss.std"] == 0.0
    assert [a.path for a in store.client.list_artifacts(parent.run_id)] == ["RESULTS.md"]


def test_k_fold_children_of_a_training_run_are_made_by_the_same_function(store: FakeStore) -> None:
    training = store.client.create_run(store.experiment_id, run_name="kfold").info.run_id
    fold = ChildRun.start(SimpleNamespace(client=store.client, run_id=training), "kfold fold 0", {"fold": "0"})  # type: ignore[arg-type]
    fold.log_metrics({"val_loss": 0.3})
    fold.end("FINISHED")
    direct = child_run(store.client, training, "kfold fold 1", {"fold": "1"})
    children = {r.info.run_name: r for r in ParentRun(store.client, training).children()}
    assert set(children) == {"kfold fold 0", "kfold fold 1"} and children["kfold fold 1"].info.run_id == direct
    assert children["kfold fold 0"].data.tags == {**children["kfold fold 0"].data.tags, PARENT_TAG: training, "fold": "0"}
    assert children["kfold fold 0"].info.status == "FINISHED" and children["kfold fold 1"].info.status == "RUNNING"


def test_an_interrupted_sweep_is_ended_once_with_its_reason(store: FakeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    parent = ParentRun.create(store.uri, store.experiment_id, "sweep", {})
    monkeypatch.setenv(SWEEP_ENV, "")  # unset again after the test
    hand_off(parent_run_id=parent.run_id, uri=store.uri, overrides=["a=1,2"])
    end_parent("KILLED", "the sweep was interrupted")
    assert handoff() == Handoff(overrides=("a=1,2",))  # the parent is no longer handed to anyone
    run = store.client.get_run(parent.run_id)
    assert run.info.status == "KILLED" and run.data.tags["sweep.stopped"] == "the sweep was interrupted"

    ended = ParentRun.create(store.uri, store.experiment_id, "done", {})
    ended.end("FINISHED")
    ended.end_if_running("KILLED", {"sweep.stopped": "late"})
    run = store.client.get_run(ended.run_id)
    assert run.info.status == "FINISHED" and "sweep.stopped" not in run.data.tags


def test_a_resumed_search_reopens_its_parent_and_retires_interrupted_children(store: FakeStore) -> None:
    first = ParentRun.create(store.uri, store.experiment_id, "search", {})
    cut = first.child("trial 1", {})  # left RUNNING by a Ctrl-C
    pruned = first.child("trial 2", {"optuna.state": "PRUNED"})
    store.client.set_terminated(pruned, "KILLED")
    kept = finished_child(first, "trial 0", {"objective": 0.1})
    first.end("KILLED")

    resumed = ParentRun.adopt(store.uri, first.run_id, reopen=True)
    assert resumed.status == "RUNNING"
    retire_interrupted(resumed)
    assert {r.info.run_id for r in resumed.children()} == {pruned, kept}  # the cut trial is soft-deleted
    gone = store.client.get_run(cut)
    assert gone.info.lifecycle_stage == "deleted" and gone.info.status == "KILLED" and gone.data.tags["optuna.state"] == "INTERRUPTED"


def test_one_variable_hands_the_parent_the_store_and_the_sweep_overrides_to_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EXPKIT_SWEEP is the only way a job learns its parent: set field by field by the launching process, read whole."""
    monkeypatch.setenv(SWEEP_ENV, "")  # unset again after the test
    assert handoff() == Handoff() and handed_parent() is None
    hand_off(overrides=["lr=0.1,0.01", "flag=true"])
    hand_off(parent_file=str(tmp_path / "parent.json"))
    publish_parent(tmp_path / "parent.json", "made-later")
    assert handed_parent() == "made-later"  # a joblib job started before the parent existed reads the published id
    hand_off(parent_run_id="known", uri="sqlite:///x.db")
    assert handed_parent() == "known"
    assert Handoff.from_json(os.environ[SWEEP_ENV]) == Handoff(
        "known", str(tmp_path / "parent.json"), "sqlite:///x.db", ("lr=0.1,0.01", "flag=true")
    )
    before = hand_off(parent_run_id=None, uri=None, parent_file=None, overrides=None)
    assert before.parent_run_id == "known" and SWEEP_ENV not in os.environ  # nothing left: the variable is unset
    for text in ("", "not json", "[1, 2]"):
        assert Handoff.from_json(text) == Handoff()
