"""expkit's Optuna sweeper (`hydra/sweeper=optuna`): search-space syntax, pruning through the shared study,
resuming a study, the summary, and the interval() pre-check with the basic sweeper."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from tests.conftest import run_inprocess

FAST = ("trainer.verbose=0", "tracking.log_model=false", "tracking.tensorboard.enabled=false", "dataset.max_train_samples=300")
SEARCH = ("-m", "hydra/sweeper=optuna", "hydra.sweep.dir=outputs/search", "trainer.epochs=3", *FAST)


def study(root: Path):
    import optuna

    from expkit.selection.study import open_storage

    return optuna.load_study(study_name="digits_mlp", storage=open_storage(f"journal:{root / 'outputs/search/optuna.journal'}"))


def tree(root: Path) -> tuple[object, list]:
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("digits_mlp").experiment_id])
    parents = [r for r in runs if r.data.tags.get("expkit.sweep") == "parent"]
    assert len(parents) == 1, "one parent run per study"
    return parents[0], [r for r in runs if r is not parents[0]]


def test_search_space_syntax_becomes_distributions() -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from expkit.selection.study import grid_values, search_space

    space, fixed = search_space(
        ["a=choice(1,2)", "b=range(1,4)", "c=interval(0.1,0.5)", "d=tag(log, interval(1e-4,1e-1))", "e=3,4", "trainer.epochs=2"]
    )
    assert fixed == ["trainer.epochs=2"]
    assert space["a"] == CategoricalDistribution([1, 2])
    assert space["b"] == IntDistribution(1, 3)
    assert space["c"] == FloatDistribution(0.1, 0.5)
    assert space["d"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert space["e"] == CategoricalDistribution([3, 4])
    assert grid_values({k: space[k] for k in "abe"}) == {"a": [1, 2], "b": [1, 2, 3], "e": [3, 4]}


def test_interval_needs_the_optuna_sweeper(workdir: Path) -> None:
    done = run_inprocess("train", "-m", "optimizer.learning_rate=interval(0.001,0.1)", cwd=workdir)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: optimizer.learning_rate:") and "hydra/sweeper=optuna" in done.stderr


@pytest.mark.slow
def test_hopeless_trials_are_pruned_and_a_rerun_continues_the_study(workdir: Path) -> None:
    # Grid order is fixed by the seed: a good learning rate first, then hopeless ones the median pruner stops after epoch 2.
    space = "optimizer.learning_rate=choice(0.03, 30.0, 60.0)"
    common = (
        *SEARCH,
        "hydra.sweeper.sampler=grid",
        "hydra.sweeper.seed=5",
        "hydra.sweeper.pruner=median",
        "hydra.sweeper.pruner_startup_trials=1",
    )
    first = run_inprocess("train", *common, "hydra.sweeper.n_trials=2", space, cwd=workdir)
    assert first.returncode == 0, first.stderr[-3000:]
    assert len(study(workdir).trials) == 2
    again = run_inprocess("train", *common, "hydra.sweeper.n_trials=3", space, cwd=workdir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 earlier trial(s)" in again.stderr

    trials = study(workdir).trials
    assert [t.number for t in trials] == [0, 1, 2], "completed trials are not rerun; numbering continues"
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") >= 1 and states.count("PRUNED") >= 1, states
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert all(max(t.intermediate_values) < 2 for t in pruned), "pruned before its last epoch"
    assert len({t.params["optimizer.learning_rate"] for t in trials}) == 3

    parent, children = tree(workdir)
    assert len(children) == 3 and all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    marked = [c for c in children if c.data.tags.get("optuna.state") == "PRUNED"]
    assert len(marked) == len(pruned) and all(c.info.status == "KILLED" for c in marked)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["sweep.num_pruned"] == str(len(pruned))
    assert "Optuna study 'digits_mlp': 3 trial(s)" in again.stdout
    assert f"MLflow parent run: {parent.info.run_id}" in again.stdout


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes"])
def test_samplers_build(sampler: str) -> None:
    from expkit.selection.study import make_sampler, search_space

    space, _ = search_space(["a=interval(0.1,0.5)", "b=range(1,4)"])
    assert make_sampler(sampler, space, 0) is not None
