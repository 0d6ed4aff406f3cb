"""expkit.tracking.new_store: a new SQLite store copied from a cached empty one is the store MLflow would have made."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import mlflow
import pytest

from expkit.tracking import new_store
from expkit.tracking.store import ensure_experiment


def dump(db: Path) -> tuple[list[list[str]], dict[str, list[tuple]]]:
    """The schema (every CREATE statement, as its set of lines: Alembic's batch migrations write a table's constraints
    in a different order from one run to the next) and the rows of every table."""
    with sqlite3.connect(db) as connection:
        statements = [sql or "" for (sql,) in connection.execute("SELECT sql FROM sqlite_master")]
        schema = sorted(sorted(line.strip().rstrip(",") for line in sql.splitlines()) for sql in statements)
        tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        rows = {name: connection.execute(f"SELECT * FROM '{name}'").fetchall() for name in tables}
    connection.close()
    return schema, rows


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder of this module's own, empty at first: whichever test makes the first new store builds its empty
    store (MLflow's migrations, about a second), the other reuses it."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def cache(cached: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(new_store.CACHE_ENV, str(cached))
    return cached


@pytest.fixture(scope="module")
def made_by_mlflow(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(folder, store) of a store MLflow made itself: expkit's first store with a cache folder that cannot be written,
    which leaves the creation to MLflow's migrations, as before the cache. The folder is the working directory then."""
    root = tmp_path_factory.mktemp("by-mlflow")
    blocker = root / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    db = root / "store" / "mlflow.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(new_store.CACHE_ENV, str(blocker / "cache"))
        patch.chdir(root)  # MLflow files its Default experiment's artifacts under ./mlruns
        assert not new_store.seed_new_store(f"sqlite:///{db}")
        assert not db.exists()
        assert ensure_experiment(f"sqlite:///{db}", "x", str(root / "artifacts")) == "1"
    return root, db


def test_a_cache_that_cannot_be_written_leaves_the_store_to_mlflow(made_by_mlflow: tuple[Path, Path]) -> None:
    root, db = made_by_mlflow
    assert not (root / "not-a-folder" / "cache").exists()
    assert mlflow.MlflowClient(f"sqlite:///{db}").get_experiment_by_name("x").experiment_id == "1"  # MLflow made it, as before


def test_a_seeded_store_equals_the_one_mlflow_makes(
    made_by_mlflow: tuple[Path, Path], cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, native = made_by_mlflow
    monkeypatch.chdir(root)  # where MLflow made its store: the Default experiment's artifacts go under ./mlruns
    seeded = root / "seeded" / "mlflow.db"
    assert new_store.seed_new_store(f"sqlite:///{seeded}")
    assert list(cache.glob(f"mlflow-{mlflow.__version__}-empty.db"))
    assert ensure_experiment(f"sqlite:///{seeded}", "x", str(root / "artifacts")) == "1"

    (native_schema, native_rows), (seeded_schema, seeded_rows) = dump(native), dump(seeded)
    assert seeded_schema == native_schema
    drop_times = lambda rows: [row[:4] + row[6:] for row in rows]  # noqa: E731  (creation and update times differ)
    assert drop_times(seeded_rows.pop("experiments")) == drop_times(native_rows.pop("experiments"))
    assert seeded_rows == native_rows  # alembic's revision, the workspace, the tags: the same rows
    ((default_artifacts,),) = sqlite3.connect(seeded).execute("SELECT artifact_location FROM experiments WHERE experiment_id = 0")
    assert default_artifacts == str(root / "mlruns" / "0")  # this store's, not the cache's folder


def test_ensure_experiment_seeds_only_a_new_sqlite_store(tmp_path: Path, cache: Path) -> None:
    db = tmp_path / "store" / "mlflow.db"
    uri = f"sqlite:///{db}"
    assert ensure_experiment(uri, "first", str(tmp_path / "artifacts")) == "1"
    assert list(cache.glob("*.db")), "a new store builds the cached empty store if it is not there yet"
    run = mlflow.MlflowClient(uri).create_run("1")
    assert not new_store.seed_new_store(uri)  # it exists now: never replaced
    assert ensure_experiment(uri, "second", str(tmp_path / "artifacts")) == "2"
    assert mlflow.MlflowClient(uri).get_run(run.info.run_id).info.experiment_id == "1"
    assert not new_store.seed_new_store("http://127.0.0.1:5000")
    assert not new_store.seed_new_store(f"postgresql://user@127.0.0.1/{tmp_path.name}")
