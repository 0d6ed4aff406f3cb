"""`expkit runs compare` / `runs best` on runs with and without an objective (issue 27): plain runs (no validation data, so
no `objective`) are compared unranked, saying so; runs with an objective are ranked by it, and the output names it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from expkit import runs
from expkit.errors import ExpkitError
from tests.conftest import run_inprocess
from tests.fabricate import FakeStore, add_run, expkit_params, make_store

# Plain runs as `mnist_dense` records them: test metrics and training curves, no val_* and no objective.
PLAIN = {"0.001": {"test_accuracy": 0.9712, "test_loss": 0.0951, "loss": 0.0402}, "0.01": {"test_accuracy": 0.9534, "test_loss": 0.1623}}
# Runs with validation data: their objective (val_loss at the best epoch) ranks them; 0.01 is better, but given second.
SCORED = {
    "0.001": {"test_accuracy": 0.91, "test_loss": 0.30, "val_loss": 0.33, "objective": 0.33},
    "0.01": {"test_accuracy": 0.88, "test_loss": 0.35, "val_loss": 0.21, "objective": 0.21},
}
OBJECTIVE_TAGS = {"objective.metric": "val_loss", "objective.mode": "min", "objective.at": "best"}


def fill(store: FakeStore, recorded: dict[str, dict[str, float]], tags: dict[str, str] | None = None) -> dict[str, str]:
    ids = {}
    for i, (lr, metrics) in enumerate(recorded.items()):
        run = add_run(store, name=f"mnist_dense lr={lr}", params=expkit_params(lr, f"/out/{i}"), metrics=metrics, tags=tags)
        ids[lr] = run.info.run_id
    return ids


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> tuple[FakeStore, dict[str, str]]:
    store = make_store(tmp_path_factory.mktemp("plain"), "mnist_dense")
    return store, fill(store, PLAIN)


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[FakeStore, dict[str, str]]:
    store = make_store(tmp_path_factory.mktemp("scored"), "mnist_dense")
    return store, fill(store, SCORED, OBJECTIVE_TAGS)


def table(out: str) -> list[dict[str, str]]:
    """The rows of the printed table as {header: cell} (columns are separated by 2+ spaces; names hold single ones)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("run id"))
    headers = re.split(r"\s{2,}", lines[start].strip())
    starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", lines[start])]
    rows = []
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        rows.append({h: line[s:e].strip() for h, s, e in zip(headers, starts, [*starts[1:], None], strict=True)})
    return rows


def test_plain_runs_are_compared_unranked_and_say_why(plain: tuple[FakeStore, dict[str, str]], capsys: pytest.CaptureFixture) -> None:
    store, ids = plain
    runs.compare_runs(run_ids=[ids["0.01"], ids["0.001"][:8]], sweep=None, metric=None, mode="auto", uri=store.uri)
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("2 runs, not ranked: no run has an 'objective'"), first
    assert "validation" in first and "--metric" in first and "best first" not in out
    rows = table(out)
    assert [r["run id"] for r in rows] == [ids["0.01"][:8], ids["0.001"][:8]]  # the order given
    assert [r["optimizer.learning_rate"] for r in rows] == ["0.01", "0.001"]  # what differs
    assert [r["test_accuracy"] for r in rows] == ["0.9534", "0.9712"] and [r["test_loss"] for r in rows] == ["0.1623", "0.0951"]


def test_an_explicit_metric_ranks_plain_runs_and_a_misspelled_one_is_an_error(
    plain: tuple[FakeStore, dict[str, str]], capsys: pytest.CaptureFixture
) -> None:
    store, ids = plain
    runs.compare_runs(run_ids=[ids["0.01"], ids["0.001"]], sweep=None, metric="test_accuracy", mode="auto", uri=store.uri)
    out = capsys.readouterr().out
    assert out.startswith("2 runs, best first by test_accuracy (max)")
    assert [r["optimizer.learning_rate"] for r in table(out)] == ["0.001", "0.01"]
    with pytest.raises(ExpkitError, match="no metric 'test_acuracy'") as error:
        runs.compare_runs(run_ids=[ids["0.01"], ids["0.001"]], sweep=None, metric="test_acuracy", mode="auto", uri=store.uri)
    assert error.value.key == "--metric" and "test_accuracy" in str(error.value.hint)


def test_runs_with_an_objective_are_ranked_by_it_and_the_output_names_it(
    scored: tuple[FakeStore, dict[str, str]], capsys: pytest.CaptureFixture
) -> None:
    store, ids = scored
    runs.compare_runs(run_ids=[ids["0.001"], ids["0.01"]], sweep=None, metric=None, mode="auto", uri=store.uri)
    out = capsys.readouterr().out
    assert out.startswith("2 runs, best first by objective (val_loss, best epoch, min)"), out
    rows = table(out)
    assert [r["optimizer.learning_rate"] for r in rows] == ["0.01", "0.001"]  # by objective, not by test_accuracy
    assert [r["objective"] for r in rows] == ["0.2100", "0.3300"]

    runs.best_run(experiment="mnist_dense", metric=None, mode="auto", uri=store.uri)
    out = capsys.readouterr().out
    assert out.startswith("best of 2 finished run(s) in 'mnist_dense' by objective (val_loss, best epoch, min):"), out
    assert re.search(rf"^  run id +{ids['0.01']}$", out, re.M)


def test_best_of_plain_runs_explains_the_missing_objective(plain: tuple[FakeStore, dict[str, str]]) -> None:
    store, _ = plain
    with pytest.raises(ExpkitError, match="no metric 'objective'") as error:
        runs.best_run(experiment="mnist_dense", metric=None, mode="auto", uri=store.uri)
    hint = str(error.value.hint)
    assert "validation data" in hint and "--metric" in hint and "test_accuracy" in hint


@pytest.mark.slow
def test_cli_compares_two_plain_mnist_dense_runs(shared_data: Path, tmp_path: Path) -> None:
    """Two real `mnist_dense` trainings (no validation data) with different learning rates: compare exits 0, unranked."""
    small = ("+experiment=mnist_dense", "dataset.max_train_samples=600", "dataset.max_test_samples=200", "trainer.epochs=1")
    for lr in ("0.001", "0.01"):
        done = run_inprocess("train", *small, f"optimizer.learning_rate={lr}", cwd=tmp_path, EXPKIT_DATA_DIR=str(shared_data))
        assert done.returncode == 0, done.stderr[-3000:]
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    found = client.search_runs([client.get_experiment_by_name("mnist_dense").experiment_id])
    assert len(found) == 2 and all("objective" not in r.data.metrics for r in found)
    done = run_inprocess("runs", "compare", *(r.info.run_id for r in found), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "not ranked: no run has an 'objective'" in done.stdout
    rows = table(done.stdout)
    assert sorted(r["optimizer.learning_rate"] for r in rows) == ["0.001", "0.01"]
    assert all(re.fullmatch(r"0\.\d{4}", r["test_accuracy"]) for r in rows), done.stdout
