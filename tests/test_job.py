"""The job layer in-process: `Job(config, resolved, context, recorder).run()` with a real SQLite MLflow store
(`MlflowRecorder`) or with nothing recorded (`NullRecorder`), on the tiny digits data, one or two epochs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pytest

from expkit.experiment.context import JobContext
from expkit.experiment.job import Job
from expkit.experiment.recorder import NullRecorder, RunRecord
from tests.conftest import compose_config


@pytest.fixture(autouse=True)
def own_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's store is its own: MLflow's set_tracking_uri leaves $MLFLOW_TRACKING_URI behind in this process."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


FAST = ("trainer.verbose=0", "tracking.tensorboard.enabled=false", "dataset.max_train_samples=200", "trainer.epochs=2")


def make_job(root: Path, *overrides: str, recorder: Any = "mlflow", **context: Any) -> Job:
    """The Job `expkit train OVERRIDES` runs, composed in-process (paths under `root`), with its recorder."""
    from omegaconf import OmegaConf

    from expkit.config import validate_config
    from expkit.config.params import derived_keys
    from expkit.tracking.recorder import MlflowRecorder

    cfg = compose_config(*overrides, f"paths.root_dir={root}", f"paths.output_dir={root}/run")
    config = validate_config(cfg)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    # threads=1: the job shares the machine, so its run is created here rather than by the opener process
    context = JobContext(overrides=list(overrides), derived=derived_keys(cfg), **{"threads": 1, **context})
    chosen = MlflowRecorder.from_config(config) if recorder == "mlflow" else recorder
    return Job(config, resolved, context, chosen)  # type: ignore[arg-type]


def runs(root: Path) -> tuple[mlflow.MlflowClient, list[Any]]:
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits_mlp")
    assert experiment is not None
    return client, client.search_runs([experiment.experiment_id])


def artifacts(client: mlflow.MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def test_holdout_job_records_its_params_metrics_and_card(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = make_job(tmp_path, *FAST, "optimizer.learning_rate=0.01", "tracking.log_model=false")
    calls = job.recorder = Calls(job.recorder)  # noted on the way to the real MlflowRecorder
    result = job.run()
    # The job scores the run before it hands over the test results, then ends it.
    assert calls.calls == ["start", "settle", "log_metrics objective", "log_result", "end FINISHED"]
    (record,) = calls.records
    assert set(record.test_metrics) >= {"test_accuracy", "test_loss"} and record.models is None
    assert record.dataset is not None and record.dataset.sizes["train"] == 160
    client, (run,) = runs(tmp_path)
    assert result.state == "COMPLETE" and result.run_id == run.info.run_id and run.info.status == "FINISHED"
    assert (tmp_path / "run" / "run_id").read_text().strip() == run.info.run_id
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["optimizer.learning_rate"] == "0.01" and params["trainer.epochs"] == "2"
    assert params["trainer.dtype_policy"] == "float32"
    assert metrics["objective"] == pytest.approx(result.score) and result.score == pytest.approx(
        min(h.value for h in client.get_metric_history(run.info.run_id, "val_loss"))
    )
    assert {"test_accuracy", "test_loss", "model.num_params", "accuracy", "val_loss", "epoch_time_s"} <= set(metrics)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [0, 1]
    assert client.get_metric_history(run.info.run_id, "test_accuracy")[0].step == 1, "test metrics sit at the last epoch's step"
    assert tags["protocol"] == "holdout" and tags["objective.metric"] == "val_loss" and tags["preset"] == "default"
    assert tags["overrides"] == " ".join([*FAST, "optimizer.learning_rate=0.01", "tracking.log_model=false"])
    assert "model_uri" not in tags and not (tmp_path / "run" / "inference").exists()
    assert "Run `" + run.info.run_id in tags["mlflow.note.content"]
    assert {"config.yaml", "metrics.json", "model_summary.txt", "run_card.md", "plots/loss.png", "plots/confusion_matrix.png"} <= artifacts(
        client, run.info.run_id
    )
    (dataset,) = run.inputs.dataset_inputs
    assert (
        dataset.dataset.name == "digits" and '"train_samples": 160, "validation_samples": 40' in dataset.dataset.profile
    )  # 200 minus the 0.2 holdout
    out = capsys.readouterr().out
    assert f"MLflow run: {run.info.run_id}" in out and "objective val_loss (best):" in out


@pytest.mark.slow
def test_job_logs_the_training_model_and_an_inference_model_that_takes_raw_inputs(tmp_path: Path) -> None:
    import numpy as np

    make_job(tmp_path, *FAST).run()
    _, (run,) = runs(tmp_path)
    tags = run.data.tags
    assert tags["model_uri"].startswith("models:/") and tags["inference_model_uri"].startswith("models:/")
    assert "inference model (raw inputs)" in tags["mlflow.note.content"]
    # the served model is the trained model: the logged inference model takes the raw digits (0..16) and names classes
    served = mlflow.pyfunc.load_model(tags["inference_model_uri"])
    raw = np.random.default_rng(0).integers(0, 17, (5, 64)).astype(np.float64)
    probabilities = np.asarray(served.predict(raw, params={"output": "probabilities"}))
    trained = mlflow.keras.load_model(tags["model_uri"])
    np.testing.assert_allclose(probabilities, trained.predict(raw / 16.0, verbose=0), rtol=1e-5, atol=1e-6)  # the preset's scale step


def test_null_recorder_job_trains_tests_and_writes_no_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = make_job(tmp_path, *FAST, "tracking=none", recorder=NullRecorder()).run()
    assert result.state == "COMPLETE" and result.run_id is None and result.score is not None
    run_dir = tmp_path / "run"
    assert (run_dir / "metrics.json").is_file() and (run_dir / "model_summary.txt").is_file()
    assert not (tmp_path / "mlflow.db").exists() and not (run_dir / "run_id").exists()
    assert not (run_dir / "inference").exists(), "no recorder keeps models: none is built"
    out = capsys.readouterr().out
    assert "test_accuracy:" in out and "MLflow run" not in out


@pytest.mark.slow
def test_kfold_job_scores_the_mean_of_child_runs_made_through_the_recorder(tmp_path: Path) -> None:
    result = make_job(tmp_path, *FAST, "dataset.validation.holdout=null", "dataset.validation.folds=2", "tracking.log_model=false").run()
    client, found = runs(tmp_path)
    (parent,) = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    folds = sorted((r for r in found if r is not parent), key=lambda r: r.data.tags["protocol.fold"])
    assert [r.data.tags["protocol.fold"] for r in folds] == ["1", "2"]
    assert [r.info.run_name for r in folds] == ["digits_mlp fold 1", "digits_mlp fold 2"]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id and r.info.status == "FINISHED" for r in folds)
    scores = [r.data.metrics["objective"] for r in folds]
    assert result.score == pytest.approx(sum(scores) / 2) == pytest.approx(parent.data.metrics["kfold.val_loss.mean"])
    assert [len(client.get_metric_history(r.info.run_id, "loss")) for r in folds] == [2, 2], "each fold logs its own epochs"
    mean_curve = client.get_metric_history(parent.info.run_id, "kfold_mean_val_loss")
    fold_curves = [[m.value for m in sorted(client.get_metric_history(r.info.run_id, "val_loss"), key=lambda m: m.step)] for r in folds]
    assert [m.value for m in sorted(mean_curve, key=lambda m: m.step)] == pytest.approx(
        [(a + b) / 2 for a, b in zip(*fold_curves, strict=True)]
    )
    assert "plots/kfold/loss.png" in artifacts(client, parent.info.run_id)
    assert not any(k.startswith("test_") for k in parent.data.metrics), "k-fold scores a configuration; it does not test"


class Calls:
    """Notes what the job asks of its recorder (the job's side of the protocol, not MLflow's) and passes every call on
    to `inner`: the NullRecorder, or a real MlflowRecorder. What it does not note is the inner recorder's own."""

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner if inner is not None else NullRecorder()
        self.calls: list[str] = []
        self.records: list[RunRecord] = []
        self.tags: dict[str, str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def start(self, name: str, tags: dict[str, str], **kwargs: Any) -> None:
        self.calls.append("start")
        self.tags.update(tags)
        self.inner.start(name, tags, **kwargs)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)
        self.inner.set_tags(tags)

    def settle(self) -> None:
        self.calls.append("settle")
        self.inner.settle()

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        self.calls.append("log_metrics " + ",".join(sorted(metrics)))
        self.inner.log_metrics(metrics, step)

    def log_result(self, record: RunRecord) -> None:
        self.calls.append("log_result")
        self.records.append(record)
        self.inner.log_result(record)

    def end(self, status: str = "FINISHED") -> None:
        self.calls.append(f"end {status}")
        self.inner.end(status)


def test_a_failing_job_ends_its_run_failed_naming_the_failure(tmp_path: Path) -> None:
    failing = Calls()
    job = make_job(tmp_path / "bad", *FAST, "dataset.validation.holdout=null", recorder=failing, multirun=True)  # a sweep job chooses
    with pytest.raises(Exception, match="needs validation data"):
        job.run()
    assert failing.calls[-1] == "end FAILED" and "needs validation data" in failing.tags["failure"]


@pytest.mark.slow
def test_playground_job_logs_the_decision_boundary_the_job_computed(tmp_path: Path) -> None:
    args = (
        "+experiment=playground_gauss",
        "trainer.epochs=1",
        "trainer.verbose=0",
        "tracking.log_model=false",
        "tracking.tensorboard.enabled=false",
    )
    make_job(tmp_path, *args).run()
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("playground_gauss")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert "plots/decision_boundary.png" in artifacts(client, run.info.run_id)
    assert (tmp_path / "run" / "plots" / "decision_boundary.png").is_file()
    assert any(path.startswith("images/decision_boundary") for path in artifacts(client, run.info.run_id)), (
        "a keyed image for the chart view"
    )


def test_a_store_that_stays_unreachable_leaves_the_run_open_and_exits_75(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from expkit.tracking.outage import EXIT_STORE_UNREACHABLE, StoreUnreachable

    class Gone(Calls):
        def settle(self) -> None:
            self.calls.append("settle")
            raise StoreUnreachable("the tracking server has not answered")

    gone = Gone()
    with pytest.raises(SystemExit) as exit_:
        make_job(tmp_path, *FAST, "tracking.log_model=false", recorder=gone).run()
    assert exit_.value.code == EXIT_STORE_UNREACHABLE == 75
    assert gone.calls == ["start", "settle"], "no end: the run stays open on the server for `expkit resume`"
    assert f"expkit resume {tmp_path / 'run'}" in capsys.readouterr().err


@pytest.mark.slow
def test_retrain_job_records_its_two_phases_as_child_runs(tmp_path: Path) -> None:
    result = make_job(tmp_path, *FAST, "protocol=retrain", "tracking.log_model=false").run()
    client, found = runs(tmp_path)
    (parent,) = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    phases = {r.data.tags["protocol.phase"]: r for r in found if r is not parent}
    assert set(phases) == {"select", "retrain"} and all(r.info.status == "FINISHED" for r in phases.values())
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in phases.values())
    assert parent.data.metrics["objective"] == pytest.approx(result.score)
    best = int(parent.data.metrics["retrain.epochs"])
    curve = [m.value for m in sorted(client.get_metric_history(phases["select"].info.run_id, "val_loss"), key=lambda m: m.step)]
    assert best == curve.index(min(curve)) + 1, "the best epoch of the selecting phase, counted from 1"
    assert len(client.get_metric_history(phases["retrain"].info.run_id, "loss")) == best, "the fresh model trains the best epoch count"
    assert "test_loss" in phases["retrain"].data.metrics and "test_loss" in parent.data.metrics
    assert not any(k.startswith("test_") for k in phases["select"].data.metrics), "the selecting phase is never tested"
