"""A new local SQLite store made by copying an empty one, instead of running MLflow's ~60 schema migrations each time.

MLflow builds a new SQLite store's schema by running every Alembic migration in turn: about 1 s of CPU (2 s on a busy
machine) before the first run of a new project can start, and again in every new folder. The result depends only on
the MLflow version, so expkit builds it once per version into the user's cache folder, with MLflow's own code, and
copies it (a few milliseconds) when a store is new. The copy holds the schema and no experiment: MLflow then creates
its `Default` experiment on first open, with this store's artifact folder and time, exactly as on a new store.

Nothing changes for a store that exists, a server URI, or when the cache folder cannot be written: MLflow then
creates the store as it always does. Callers hold `store.store_lock`, so two processes never seed the same store.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from contextlib import suppress
from pathlib import Path

#: Where the empty stores are kept: $EXPKIT_CACHE_DIR, else $XDG_CACHE_HOME/expkit, else ~/.cache/expkit.
CACHE_ENV = "EXPKIT_CACHE_DIR"


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "expkit"


def seed_new_store(uri: str) -> bool:
    """Copy an empty store to `uri`'s file if it is a `sqlite:///` store that does not exist yet; True if copied.

    Any failure (no cache folder, a template MLflow cannot build) leaves the file absent, for MLflow to create."""
    if not uri.startswith("sqlite:///") or "?" in uri:  # a URI with driver options: left to MLflow
        return False
    db = Path(uri.removeprefix("sqlite:///"))
    if db.exists():
        return False
    partial = db.with_name(f"{db.name}.{os.getpid()}.partial")
    try:
        template = empty_store()
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, partial)
        partial.replace(db)
    except Exception:  # a shortcut only: MLflow then creates the store, and reports what is really wrong
        with suppress(OSError):
            partial.unlink()
        return False
    return True


def empty_store() -> Path:
    """The cached empty store for the installed MLflow version, built now if missing."""
    import mlflow

    template = cache_dir() / f"mlflow-{mlflow.__version__}-empty.db"
    if not template.exists():
        template.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=template.name, suffix=".partial", dir=template.parent)
        os.close(handle)
        os.unlink(partial)  # MLflow creates the file itself
        try:
            _build(Path(partial))
            os.replace(partial, template)  # atomic: another process building at once writes the same schema
        finally:
            with suppress(FileNotFoundError):
                os.unlink(partial)
    return template


def _build(path: Path) -> None:
    """MLflow's own schema for a new SQLite store, without the `Default` experiment its first open adds."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{path}", str(path.parent / "unused-artifacts"))
    store.engine.dispose()
    with sqlite3.connect(path) as db:  # experiment 0 is MLflow's Default one; a new store has no other row to drop
        db.execute("DELETE FROM experiments WHERE experiment_id = 0")
        db.execute("DELETE FROM experiment_tags WHERE experiment_id = 0")
    db.close()
