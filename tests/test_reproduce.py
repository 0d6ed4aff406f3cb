"""`expkit reproduce`: the targets file, the verdicts, the report, and one end-to-end run through the CLI."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from expkit.config.locate import group_options
from expkit.errors import ExpkitError
from expkit.reproduce_report import render_markdown
from expkit.reproduce_stats import Attempt, TargetResult
from expkit.reproduce_targets import Band, Target, load_targets, missing_data, select_targets, targets_file
from tests.conftest import mlflow_runs, run_expkit, run_inprocess


def mlflow_artifacts(root: Path, run_id: str, folder: str) -> list:
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}").list_artifacts(run_id, folder)


def test_every_target_names_a_preset_and_a_band_with_its_reason() -> None:
    targets = load_targets(targets_file())
    presets = set(group_options("experiment"))
    for target in targets.values():
        assert target.preset_name in presets, f"{target.name}: no preset {target.preset_name}"
        assert target.band, f"{target.name}: say how the band was chosen (band:)"
    quick = [t.name for t in targets.values() if t.quick]
    assert {"mnist_dense", "boston_final", "playground_circle", "playground_circle_1"} <= set(quick)


def test_band_and_verdicts() -> None:
    band = Band(min=0.7, max=0.8)
    assert band.contains(0.7) and band.contains(0.8) and not band.contains(0.69) and not band.contains(0.81)
    assert str(Band(max=3.0)) == "≤ 3" and str(band) == "0.7–0.8"
    target = Target(name="t", metric="test_accuracy", accept=band)
    two = TargetResult(target, [Attempt(42, 0.72), Attempt(43, 0.76)])
    assert two.verdict == "pass" and two.mean == pytest.approx(0.74) and two.std == pytest.approx(0.0283, abs=1e-4)
    assert "± 0.0283 (n=2)" in two.result_text()
    assert TargetResult(target, [Attempt(42, 0.6)]).verdict == "FAIL"
    assert TargetResult(target, [Attempt(42, 0.75), Attempt(43, error="expkit train exited 2")]).failed
    skipped = TargetResult(target, skipped="needs mnist.npz")
    assert skipped.verdict == "skipped: needs mnist.npz" and not skipped.failed
    report = render_markdown([two, skipped], command="expkit reproduce t", started=datetime.now(UTC), data_dir=None)
    assert "| t | test_accuracy | - | 0.7400 ± 0.0283 (n=2) | 0.7–0.8 | pass |" in report
    assert "skipped: needs mnist.npz" in report and "Versions: python" in report


def test_selection_and_missing_data(tmp_path: Path) -> None:
    targets = {
        "a": Target(name="a", metric="test_accuracy", accept=Band(min=0.5), quick=True, needs=["a.npz"]),
        "b": Target(name="b", metric="test_accuracy", accept=Band(min=0.5)),
    }
    assert [t.name for t in select_targets(targets, [], quick=True)] == ["a"]
    assert [t.name for t in select_targets(targets, ["b", "a"], quick=False)] == ["b", "a"]
    with pytest.raises(ExpkitError, match="did you mean 'a'"):
        select_targets(targets, ["aa"], quick=False)
    assert missing_data(targets["a"], tmp_path) == ["a.npz"]
    (tmp_path / "a.npz").write_bytes(b"")
    assert missing_data(targets["a"], tmp_path) == []


def test_bad_targets_file_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "targets.yaml"
    bad.write_text("x:\n  metric: test_accuracy\n  accept: {}\n")
    with pytest.raises(ExpkitError, match="target x: accept needs min, max or both"):
        load_targets(bad)
    bad.write_text("x:\n  metric: test_accuracy\n  accept: {minimum: 1}\n")
    with pytest.raises(ExpkitError, match=r"target x: accept\.minimum"):
        load_targets(bad)


TARGETS = """
gauss:
  preset: playground_gauss
  metric: test_accuracy
  book: separable
  accept: {min: 0.9}
  band: test fixture
  quick: true
gauss_impossible:
  preset: playground_gauss
  metric: test_accuracy
  accept: {min: 1.5}
  band: test fixture, a band no run can reach
  quick: true
needs_data:
  preset: mnist_dense
  metric: test_accuracy
  accept: {min: 0.97}
  needs: [no_such_file.npz]
  band: test fixture
  quick: true
slow:
  preset: playground_spiral
  metric: test_accuracy
  accept: {min: 0.9}
  band: test fixture, not quick
"""


@pytest.mark.slow
def test_reproduce_runs_children_under_one_parent_and_fails_outside_the_band(workdir: Path) -> None:
    (workdir / "targets.yaml").write_text(TARGETS)
    (workdir / "data").mkdir()
    done = run_expkit(
        "reproduce",
        "--quick",
        "--targets",
        "targets.yaml",
        "--data-dir",
        "data",
        "trainer.epochs=3",
        "tracking.log_model=false",
        cwd=workdir,
    )
    assert done.returncode == 1, done.stderr
    assert "reproduce: gauss_impossible: FAIL" in done.stderr and "band ≥ 1.5" in done.stderr
    assert "reproduce: gauss:" not in done.stderr
    table = done.stdout
    assert "needs_data" in table and "skipped: needs no_such_file.npz" in table and "slow" not in table
    report = (workdir / "RESULTS.md").read_text()
    assert "| gauss | test_accuracy | separable |" in report and "| pass |" in report and "| FAIL |" in report

    runs = {r.info.run_name: r for r in mlflow_runs(workdir, "reproduction")}
    (parent,) = [r for r in runs.values() if r.data.tags.get("expkit.reproduce") == "parent"]
    assert parent.info.status == "FAILED"
    children = [r for r in runs.values() if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["reproduce.target"] for r in children) == ["gauss", "gauss_impossible"]
    assert all(r.info.status == "FINISHED" and r.data.params["trainer.epochs"] == "3" for r in children)
    assert parent.data.tags["verdict.needs_data"] == "skipped: needs no_such_file.npz"
    (gauss,) = [r for r in children if r.data.tags["reproduce.target"] == "gauss"]
    assert parent.data.metrics["gauss.mean"] == pytest.approx(gauss.data.metrics["test_accuracy"])
    assert "decision_boundary.png" in {a.path.split("/")[-1] for a in mlflow_artifacts(workdir, gauss.info.run_id, "plots")}
    # ... and as a keyed image, which MLflow's chart view lays out side by side across runs
    assert any(a.path.startswith("images/decision_boundary+step+0") for a in mlflow_artifacts(workdir, gauss.info.run_id, "images"))

    skipped_only = run_inprocess("reproduce", "needs_data", "--targets", "targets.yaml", "--data-dir", "data", cwd=workdir)
    assert skipped_only.returncode == 0, skipped_only.stderr
    assert "skipped" in skipped_only.stdout
    strict = run_inprocess("reproduce", "needs_data", "--require-data", "--targets", "targets.yaml", "--data-dir", "data", cwd=workdir)
    assert strict.returncode == 1 and "needs_data: skipped: needs no_such_file.npz" in strict.stderr


def test_unknown_target_is_a_user_error(workdir: Path) -> None:
    done = run_inprocess("reproduce", "mnist_dens", cwd=workdir)
    assert done.returncode == 2 and "did you mean 'mnist_dense'" in done.stderr
