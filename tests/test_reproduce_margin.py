"""`expkit reproduce` checks claims about a difference: a target with `beats:` fails unless its mean beats the named
target's mean by the margin (the deep spiral network against the one-layer one), and a target with `repeats:` runs
on at least that many seeds."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from expkit.errors import ExpkitError
from expkit.reproduce_margin import apply_margins
from expkit.reproduce_report import render_markdown
from expkit.reproduce_stats import Attempt, TargetResult
from expkit.reproduce_targets import Band, Beats, Target, load_targets, select_targets, targets_file
from tests.conftest import mlflow_runs, run_expkit


def spiral_pair(deep: list[float], shallow: list[float], by: float = 0.2) -> tuple[TargetResult, TargetResult]:
    deep_target = Target(name="deep", metric="test_accuracy", accept=Band(min=0.63), beats=Beats(target="shallow", by=by))
    shallow_target = Target(name="shallow", metric="test_accuracy", accept=Band(max=0.8))
    results = (
        TargetResult(deep_target, [Attempt(42 + i, v) for i, v in enumerate(deep)]),
        TargetResult(shallow_target, [Attempt(42 + i, v) for i, v in enumerate(shallow)]),
    )
    apply_margins(list(results))
    return results


def test_deep_must_beat_shallow_by_the_margin_even_inside_its_band() -> None:
    deep, shallow = spiral_pair([0.99, 0.97, 0.98], [0.60, 0.62, 0.58])
    assert deep.verdict == "pass" and shallow.verdict == "pass"
    # the old 200-epoch spiral: inside its own band (>= 0.63), but only 0.13 above one layer
    deep, shallow = spiral_pair([0.748, 0.704, 0.700], [0.588, 0.600, 0.556])
    assert shallow.verdict == "pass" and deep.failed
    assert deep.verdict.startswith("FAIL: 0.7173 is +0.1360 above shallow (0.5813)") and "needs 0.2 or more" in deep.verdict
    report = render_markdown([deep, shallow], command="expkit reproduce deep", started=datetime.now(UTC), data_dir=None)
    assert "| ≥ 0.63; shallow + 0.2 | FAIL: 0.7173 is +0.1360 above shallow" in report
    # nothing to compare with is a failure, not a pass
    lone = TargetResult(deep.target, [Attempt(42, 0.99)])
    apply_margins([lone])
    assert lone.failed and "cannot compare with shallow (not run)" in lone.verdict
    errored = TargetResult(shallow.target, [Attempt(42, error="expkit train exited 1")])
    apply_margins([lone, errored])
    assert lone.failed and "cannot compare with shallow (error: expkit train exited 1)" in lone.verdict


def test_lower_is_better_margin() -> None:
    target = Target(name="small", metric="test_mae", accept=Band(max=3.0), beats=Beats(target="big", by=0.5, higher_is_better=False))
    small = TargetResult(target, [Attempt(42, 2.4)])
    big = TargetResult(Target(name="big", metric="test_mae", accept=Band(max=9.0)), [Attempt(42, 3.0)])
    apply_margins([small, big])
    assert small.verdict == "pass"
    small.attempts[0].value = 2.7
    apply_margins([small, big])
    assert small.failed and "+0.3000 below big" in small.verdict


def test_selecting_a_target_selects_the_one_it_must_beat(tmp_path: Path) -> None:
    path = tmp_path / "targets.yaml"
    path.write_text(
        "shallow: {preset: playground_spiral, metric: test_accuracy, accept: {max: 0.7}, band: x}\n"
        "deep: {preset: playground_spiral, metric: test_accuracy, accept: {min: 0.9}, band: x, quick: true, repeats: 3,"
        " beats: {target: shallow, by: 0.2}}\n"
    )
    targets = load_targets(path)
    assert targets["deep"].repeats == 3 and targets["shallow"].repeats == 1
    assert [t.name for t in select_targets(targets, ["deep"], quick=False)] == ["shallow", "deep"]
    assert [t.name for t in select_targets(targets, [], quick=True)] == ["shallow", "deep"]  # shallow is not quick itself
    assert [t.name for t in select_targets(targets, ["deep", "shallow"], quick=False)] == ["deep", "shallow"]  # as named
    path.write_text(path.read_text().replace("target: shallow", "target: shalow"))
    with pytest.raises(ExpkitError, match=r"target deep: beats.target: no other target 'shalow'") as caught:
        load_targets(path)
    assert "did you mean 'shallow'" in str(caught.value)
    path.write_text(path.read_text().replace("target: shalow", "target: deep"))
    with pytest.raises(ExpkitError, match="no other target 'deep'"):
        load_targets(path)


def test_the_spiral_record_compares_six_layers_with_one() -> None:
    targets = load_targets(targets_file())
    deep, shallow = targets["playground_spiral"], targets["playground_spiral_shallow"]
    assert deep.beats is not None and deep.beats.target == "playground_spiral_shallow" and deep.beats.by >= 0.15
    assert deep.accept.min is not None and deep.accept.min >= 0.9  # T: with all six layers the spiral is classified
    assert shallow.accept.max is not None and shallow.accept.max < deep.accept.min
    assert deep.repeats >= 3 and shallow.repeats >= 3  # "on every seed": the record runs several
    assert deep.overrides == [] and not any(o.startswith("trainer.epochs") for o in shallow.overrides)  # trained as long


TARGETS = """
one_neuron:
  preset: playground_circle
  overrides: [model.units=1]
  metric: test_accuracy
  accept: {max: 1.0}
  band: test fixture
three_neurons:
  preset: playground_circle
  metric: test_accuracy
  accept: {min: 0.0}
  band: test fixture, a margin no run can reach
  repeats: 2
  beats: {target: one_neuron, by: 1.5}
"""


@pytest.mark.slow
def test_reproduce_fails_when_the_margin_is_missed(workdir: Path) -> None:
    (workdir / "targets.yaml").write_text(TARGETS)
    done = run_expkit(
        "reproduce", "three_neurons", "--targets", "targets.yaml", "trainer.epochs=2", "tracking.log_model=false", cwd=workdir
    )
    assert done.returncode == 1, done.stderr
    assert "reproduce: three_neurons: FAIL:" in done.stderr and "above one_neuron" in done.stderr
    assert "reproduce: one_neuron" not in done.stderr  # in its own band: only the comparison fails
    report = (workdir / "RESULTS.md").read_text()
    assert "| one_neuron | test_accuracy |" in report and "| ≥ 0; one_neuron + 1.5 | FAIL:" in report
    children = [r for r in mlflow_runs(workdir, "reproduction") if "reproduce.target" in r.data.tags]
    assert sorted(r.data.tags["reproduce.target"] for r in children) == ["one_neuron", "three_neurons", "three_neurons"]
