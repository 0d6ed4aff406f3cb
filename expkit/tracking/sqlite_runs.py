"""The SQLite fast path: runs and experiments read straight from a local SQLite store, read-only and without MLflow
(whose import and store set-up cost seconds)."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expkit.tracking.query import local_store_path
from expkit.tracking.store import TABLE_VIEW_TAG


def sqlite_file(uri: str) -> Path | None:
    """The file of a local SQLite store that exists; None for any other store."""
    path = local_store_path(uri)
    return path if uri.startswith("sqlite:") and path is not None and path.is_file() else None


def read_only(db_file: Path) -> Any:
    """A read-only connection to a SQLite file, closed on leaving the `with` block."""
    import sqlite3

    return contextlib.closing(sqlite3.connect(f"{db_file.as_uri()}?mode=ro", uri=True))


@dataclass
class SqliteRunInfo:
    run_id: str
    experiment_id: str
    run_name: str | None
    status: str
    start_time: int | None


@dataclass
class SqliteRunData:
    metrics: dict[str, float]
    tags: dict[str, str]


@dataclass
class SqliteRun:
    """The fields of an MLflow `Run` that `runs list` shows, read straight from a SQLite store."""

    info: SqliteRunInfo
    data: SqliteRunData


def read_sqlite_runs(uri: str, experiment: str | None, limit: int) -> tuple[dict[str, str], list[Any]] | None:
    """(experiment names by id, newest runs) from a local SQLite store, read-only and without importing MLflow
    (whose import and store set-up cost seconds); None when the store is not SQLite, the experiment is not found
    (MLflow's path then explains), or the schema is not what this reader knows."""
    import sqlite3

    db_file = sqlite_file(uri)
    if db_file is None:
        return None
    try:
        with read_only(db_file) as db:
            names = {str(i): str(n) for i, n in db.execute("SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = 'active'")}
            if experiment is not None:
                names = {i: n for i, n in names.items() if n == experiment}
                if not names:
                    return None
            marks = ",".join("?" * len(names))
            rows = db.execute(
                f"SELECT run_uuid, experiment_id, name, status, start_time FROM runs WHERE lifecycle_stage = 'active'"
                f" AND experiment_id IN ({marks}) ORDER BY start_time DESC, run_uuid LIMIT ?",
                (*names, limit),
            ).fetchall()
            runs = {r[0]: SqliteRun(SqliteRunInfo(r[0], str(r[1]), r[2], r[3], r[4]), SqliteRunData({}, {})) for r in rows}
            ids = list(runs)
            for start in range(0, len(ids), 500):  # SQLite's limit on bound parameters
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for run_id, key, value, is_nan in db.execute(
                    f"SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN ({marks})", chunk
                ):
                    runs[run_id].data.metrics[key] = math.nan if is_nan else float(value)
                for run_id, key, value in db.execute(f"SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({marks})", chunk):
                    runs[run_id].data.tags[key] = value
            return names, list(runs.values())
    except (sqlite3.Error, TypeError, ValueError):
        return None


def experiment_pages(uri: str, most: int = 10) -> list[tuple[str, str, int, bool]]:
    """(id, name, number of runs, has expkit's table view) of the active experiments with runs in a SQLite store,
    read without MLflow; [] if unreadable."""
    import sqlite3

    db_file = sqlite_file(uri)
    if db_file is None:
        return []
    query = (
        "SELECT e.experiment_id, e.name, COUNT(r.run_uuid),"
        " EXISTS (SELECT 1 FROM experiment_tags t WHERE t.experiment_id = e.experiment_id AND t.key = ?)"
        " FROM experiments e JOIN runs r ON r.experiment_id = e.experiment_id"
        " WHERE e.lifecycle_stage = 'active' AND r.lifecycle_stage = 'active' GROUP BY e.experiment_id, e.name"
        " ORDER BY MAX(r.start_time) DESC LIMIT ?"
    )
    try:
        with read_only(db_file) as db:
            rows = db.execute(query, (TABLE_VIEW_TAG, most)).fetchall()
            return [(str(i), str(n), int(c), bool(v)) for i, n, c, v in rows]
    except sqlite3.Error:
        return []
