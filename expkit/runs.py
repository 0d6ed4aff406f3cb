"""CLI read paths over recorded runs: list, compare, best, and the MLflow UI.

Everything here reads the same store `expkit train` writes to (see `expkit.tracking.store.tracking_uri`).
MLflow is imported inside the functions so that `expkit --help` stays fast.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from expkit.errors import ExpkitError, suggestion
from expkit.tracking.store import TABLE_VIEW_KEY, TABLE_VIEW_TAG, TRAINING_VIEW_QUERY, tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Experiment, Run

#: Shortest run id prefix accepted on the command line.
MIN_PREFIX = 6
#: Characters of a run id shown in tables.
SHORT_ID = 8
#: Longest run name shown in a table cell.
NAME_WIDTH = 48
PAGE = 1000
MISSING = "-"
PARENT_TAG = "mlflow.parentRunId"
LIST_HINT = "see `expkit runs list` for the ids in this store"


# ---------------------------------------------------------------- helpers


def resolve_uri(uri: str | None) -> str:
    """--uri, else $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db."""
    return uri or tracking_uri(None, os.getcwd())


def local_store_path(uri: str) -> Path | None:
    """The file (SQLite) or folder (file store) behind a local URI; None for a server or other database."""
    if uri.startswith("sqlite:"):
        from sqlalchemy.engine import make_url

        database = make_url(uri).database
        return Path(database).expanduser().resolve() if database and database != ":memory:" else None
    if uri.startswith("file:"):
        return Path(urlparse(uri).path).expanduser().resolve()
    if "://" not in uri:
        return Path(uri).expanduser().resolve()
    return None


def check_store(uri: str) -> None:
    """Fail with a clear message (before MLflow creates an empty store) if `uri` points nowhere."""
    path = local_store_path(uri)
    if path is not None:
        if not path.exists():
            raise ExpkitError(
                f"no MLflow store at {path} (tracking URI {uri})",
                hint="run `expkit train` in this folder first, or point to a store with --uri or $MLFLOW_TRACKING_URI",
            )
        return
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https") and parsed.hostname:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname, port), timeout=5).close()
        except OSError as exc:
            raise ExpkitError(
                f"cannot reach the MLflow server {uri}: {exc}", hint="start the server, or use another store with --uri"
            ) from None


@contextlib.contextmanager
def store_errors(uri: str) -> Iterator[None]:
    """Turn MLflow and connection failures into one-line ExpkitErrors."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExpkitError(f"cannot read the MLflow store {uri}: {first}") from None
    except OSError as exc:  # includes requests' ConnectionError
        raise ExpkitError(f"cannot reach the MLflow store {uri}: {exc}") from None


def open_client(uri: str | None) -> tuple[MlflowClient, str]:
    """A client on the resolved store, after checking that the store exists."""
    resolved = resolve_uri(uri)
    check_store(resolved)
    import mlflow

    with store_errors(resolved):
        return mlflow.MlflowClient(resolved), resolved


def resolve_mode(metric: str, mode: str, runs: Sequence[Run] = ()) -> str:
    """'min' or 'max'. `auto`: for the `objective` metric, the direction the runs recorded; else the shared rule (max for accuracy-like)."""
    from expkit.selection.objective import direction

    if (mode or "auto").lower() == "auto" and metric == OBJECTIVE:
        recorded = {r.data.tags.get("objective.mode") for r in runs} - {None}
        if len(recorded) == 1:
            return str(recorded.pop())
    try:
        return direction(metric, mode)
    except ExpkitError:
        raise ExpkitError(f"unknown mode '{mode}'", key="--mode", hint="one of: min, max, auto") from None


#: The metric every run records from its validation data: what selection ranks by unless told otherwise.
OBJECTIVE = "objective"


def format_value(value: Any) -> str:
    """A metric as text: 4 decimals, or 4 significant digits for very small or large values."""
    if value is None:
        return MISSING
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value == 0 or 1e-3 <= abs(value) < 1e6:
            return f"{value:.4f}"
        return f"{value:.4g}"
    return str(value)


def short(run_id: str) -> str:
    return run_id[:SHORT_ID]


def clip(text: str, width: int = NAME_WIDTH) -> str:
    """`text` cut to about `width` characters at a space, never inside a word such as `holdout=1000` (a first word
    longer than `width` is kept whole), with "..." where words were left out."""
    if len(text) <= width:
        return text
    kept: list[str] = []
    for word in text.split(" "):
        if kept and len(" ".join([*kept, word])) > width - 4:
            break
        kept.append(word)
    return " ".join(kept) + " ..."


def started(run: Run) -> str:
    ms = run.info.start_time
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S") if ms else MISSING


def metric_of(run: Run, name: str) -> float | None:
    """The run's (last) value of `name`, or None when absent or NaN."""
    value = run.data.metrics.get(name)
    return None if value is None or math.isnan(value) else float(value)


def key_metrics(runs: Sequence[Run]) -> list[str]:
    """All test_* metrics the runs have, sorted."""
    return sorted({k for r in runs for k in r.data.metrics if k.startswith("test_")})


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None) -> str:
    """A plain-text table: columns padded to their widest cell, a dashed rule under the header."""
    right = list(right or [False] * len(headers))
    widths = [max(len(str(h)), *(len(str(row[i])) for row in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [str(c).rjust(w) if r else str(c).ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def search_all(client: MlflowClient, experiment_ids: list[str], filter_string: str = "", limit: int | None = None) -> list[Run]:
    """Active runs of these experiments, newest first, every page (or the first `limit`)."""
    runs: list[Run] = []
    token = None
    while True:
        size = PAGE if limit is None else min(PAGE, limit - len(runs))
        page = client.search_runs(
            experiment_ids, filter_string=filter_string, max_results=size, order_by=["attributes.start_time DESC"], page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token or (limit is not None and len(runs) >= limit):
            return runs


def experiments(client: MlflowClient) -> list[Experiment]:
    """All active experiments."""
    found: list[Experiment] = []
    token = None
    while True:
        page = client.search_experiments(max_results=PAGE, page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return found


def find_experiment(client: MlflowClient, uri: str, name: str) -> Experiment:
    """The active experiment `name`, or an error naming the known experiments."""
    exp = client.get_experiment_by_name(name)
    if exp is not None and exp.lifecycle_stage == "active":
        return exp
    names = [e.name for e in experiments(client)]
    hint = suggestion(name, names, "known experiments") if names else "the store has no experiments yet: run `expkit train` first"
    raise ExpkitError(f"no experiment '{name}' in {uri}", hint=hint)


def check_ref(ref: str) -> str:
    """A run id or id prefix as typed, normalized; an error if it cannot be one (checked before opening the store)."""
    ref = ref.strip().lower()
    if not ref.isalnum() or not ref.isascii():
        raise ExpkitError(f"'{ref}' is not a run id", hint=LIST_HINT)
    if len(ref) < MIN_PREFIX:
        raise ExpkitError(f"run id '{ref}' is too short", hint=f"give the full id or its first {MIN_PREFIX}+ characters; {LIST_HINT}")
    return ref


def find_run(client: MlflowClient, uri: str, ref: str) -> Run:
    """The run with id `ref`, or the one run whose id starts with `ref` (at least MIN_PREFIX characters)."""
    from mlflow.exceptions import MlflowException

    ref = check_ref(ref)
    if len(ref) == 32:
        try:
            return client.get_run(ref)
        except MlflowException:
            raise ExpkitError(f"no run '{ref}' in {uri}", hint=LIST_HINT) from None
    ids = [e.experiment_id for e in experiments(client)]
    matches = search_all(client, ids, f"attributes.run_id LIKE '{ref}%'") if ids else []
    if not matches:
        raise ExpkitError(f"no run '{ref}' in {uri}", hint=LIST_HINT)
    if len(matches) > 1:
        shown = ", ".join(r.info.run_id for r in matches[:5])
        raise ExpkitError(f"run id prefix '{ref}' is ambiguous: it matches {len(matches)} runs ({shown})", hint="give more characters")
    return matches[0]


# Params that differ between any two runs by construction (where the run wrote its files): not a difference in the experiment.
RUN_LOCATION_PARAMS = {"paths.output_dir"}


def differing_params(runs: Sequence[Run]) -> list[str]:
    """Param names whose value is not the same in every run (missing counts as a value), sorted; run locations excluded."""
    names = sorted({k for r in runs for k in r.data.params} - RUN_LOCATION_PARAMS)
    return [k for k in names if len({r.data.params.get(k) for r in runs}) > 1]


def rank(runs: Sequence[Run], metric: str, mode: str) -> list[Run]:
    """Best first by `metric`; runs without it go last, in their original order."""
    has = [r for r in runs if metric_of(r, metric) is not None]
    missing = [r for r in runs if metric_of(r, metric) is None]
    return sorted(has, key=lambda r: metric_of(r, metric) or 0.0, reverse=mode == "max") + missing


def check_metric(runs: Sequence[Run], metric: str, where: str) -> None:
    """Fail, listing the metrics the runs do have, when none of them has `metric`."""
    if any(metric_of(r, metric) is not None for r in runs):
        return
    known = sorted({k for r in runs for k in r.data.metrics})
    hint = suggestion(metric, known, "metrics they have") if known else "they have no metrics at all"
    if metric == OBJECTIVE and known:
        hint = f"a run records an objective only when it has validation data; choose a metric with --metric ({', '.join(known)})"
    raise ExpkitError(f"no metric '{metric}' in {where}", key="--metric", hint=hint)


# ---------------------------------------------------------------- commands


def list_runs(*, experiment: str | None, uri: str | None, limit: int) -> None:
    """Print the newest runs (all experiments, or one) as a table: id, experiment, name, status, start, test metrics."""
    if limit < 1:
        raise ExpkitError(f"must be at least 1, got {limit}", key="--limit")
    resolved = resolve_uri(uri)
    check_store(resolved)
    read = read_sqlite_runs(resolved, experiment, limit)
    if read is not None:
        names, runs = read
    else:
        client, resolved = open_client(resolved)
        with store_errors(resolved):
            exps = [find_experiment(client, resolved, experiment)] if experiment is not None else experiments(client)
            names = {e.experiment_id: e.name for e in exps}
            runs = search_all(client, list(names), limit=limit) if names else []
    if not runs:
        print(f"no runs in {f'experiment {experiment!r} of ' if experiment else ''}{resolved}")
        return
    metrics = key_metrics(runs)
    in_sweeps = any(PARENT_TAG in r.data.tags or r.data.tags.get("expkit.sweep") == "parent" for r in runs)
    headers = ["run id", "experiment", "name", "status", "started", *(["sweep"] if in_sweeps else []), *metrics]
    rows = []
    for r in runs:
        sweep = ["parent" if r.data.tags.get("expkit.sweep") == "parent" else short(r.data.tags.get(PARENT_TAG, MISSING))]
        rows.append(
            [
                short(r.info.run_id),
                names.get(r.info.experiment_id, r.info.experiment_id),
                clip(r.info.run_name or MISSING),
                r.info.status,
                started(r),
                *(sweep if in_sweeps else []),
                *(format_value(metric_of(r, m)) for m in metrics),
            ]
        )
    right = [False] * (len(headers) - len(metrics)) + [True] * len(metrics)
    print(render_table(headers, rows, right))
    more = " (use --limit for more)" if len(runs) == limit else ""
    print(f"\n{len(runs)} run(s), newest first, in {resolved}{more}")


def compare_runs(*, run_ids: list[str], sweep: str | None, metric: str | None, mode: str, uri: str | None) -> None:
    """Print one row per run: the params that differ between the runs and the key metrics, best first by `metric`.

    Without --metric the runs are ranked by their objective; runs that recorded none (no validation data) are shown
    unranked, in the order given, with a line saying so."""
    if run_ids and sweep:
        raise ExpkitError("give run ids or --sweep, not both")
    if not run_ids and not sweep:
        raise ExpkitError("nothing to compare", hint=f"pass two or more run ids, or --sweep PARENT_RUN_ID; {LIST_HINT}")
    for ref in [*run_ids, *([sweep] if sweep else [])]:
        check_ref(ref)
    explicit, metric = metric is not None, metric or OBJECTIVE
    client, resolved = open_client(uri)
    with store_errors(resolved):
        if sweep:
            parent = find_run(client, resolved, sweep)
            parent_id = parent.info.run_id
            runs = search_all(client, [parent.info.experiment_id], f"tags.`{PARENT_TAG}` = '{parent_id}'")
            if not runs:
                raise ExpkitError(f"run {parent_id} has no child runs", hint=f"--sweep takes the id of a sweep's parent run; {LIST_HINT}")
            where = f"the children of sweep {short(parent_id)}"
        else:
            runs = []
            for ref in run_ids:
                run = find_run(client, resolved, ref)
                if run.info.run_id not in {r.info.run_id for r in runs}:
                    runs.append(run)
            where = "these runs"
    if len(runs) < 2:
        raise ExpkitError(f"need at least 2 runs to compare, got {len(runs)}", hint=LIST_HINT)
    ranked_by = rank_metric(runs, metric, explicit, where)
    direction = resolve_mode(ranked_by, mode, runs) if ranked_by else ""

    params = differing_params(runs)
    metrics = key_metrics(runs)
    if any("val_loss" in r.data.metrics for r in runs):
        metrics.append("val_loss")
    if any(OBJECTIVE in r.data.metrics for r in runs) and metric != OBJECTIVE:
        metrics.insert(0, OBJECTIVE)
    if ranked_by and ranked_by not in metrics:
        metrics.insert(0, ranked_by)
    ordered = rank(runs, ranked_by, direction) if ranked_by else list(runs)
    headers = ["run id", "name", *params, *metrics]
    rows = [
        [
            short(r.info.run_id),
            clip(r.info.run_name or MISSING),
            *(r.data.params.get(p, MISSING) for p in params),
            *(format_value(metric_of(r, m)) for m in metrics),
        ]
        for r in ordered
    ]
    right = [False] * (2 + len(params)) + [True] * len(metrics)
    if ranked_by:
        print(f"{len(runs)} runs, best first by {describe_metric(ranked_by, runs, direction)}; {len(params)} param(s) differ")
    else:
        print(f"{len(runs)} runs, not ranked: {unranked_reason(runs)}; {len(params)} param(s) differ")
    print(render_table(headers, rows, right))
    without = [r for r in runs if ranked_by and metric_of(r, ranked_by) is None]
    if without:
        print(f"\n({len(without)} run(s) without {ranked_by} are listed last, unranked)")
    if not params:
        print("\n(all params are equal in these runs)")


def rank_metric(runs: Sequence[Run], metric: str, explicit: bool, where: str) -> str | None:
    """The metric to rank by: `metric` when some run has it; None (no ranking) when the default objective is absent.

    An explicit --metric that no run has is an error (a typo must not pass as an unranked table)."""
    if any(metric_of(r, metric) is not None for r in runs):
        return metric
    if explicit:
        check_metric(runs, metric, where)
    return None


def unranked_reason(runs: Sequence[Run]) -> str:
    """Why runs without an objective are shown unranked, and how to rank them anyway."""
    return (
        f"no run has an '{OBJECTIVE}' (a run records one only when it has validation data, e.g. dataset.validation.holdout=N); "
        "rank by another metric with --metric NAME"
    )


def describe_metric(metric: str, runs: Sequence[Run], direction: str) -> str:
    """`objective (val_loss, best epoch, min)`: the objective with what it measured, as the runs recorded it; else `name (min)`."""
    if metric == OBJECTIVE:
        scored = [r for r in runs if metric_of(r, metric) is not None]
        measured = {r.data.tags.get("objective.metric") for r in scored} - {None}
        at = {r.data.tags.get("objective.at") for r in scored} - {None}
        if len(measured) == 1:
            return f"{metric} ({measured.pop()}" + (f", {at.pop()} epoch" if len(at) == 1 else "") + f", {direction})"
    return f"{metric} ({direction})"


def best_run(
    *,
    experiment: str | None,
    metric: str | None,
    mode: str,
    uri: str | None,
    sweep: str | None = None,
    export: str | None = None,
) -> None:
    """Print the best FINISHED run of `experiment` (or of the sweep `sweep`) by `metric` (default: the objective).

    With `export`, write the winner as a preset: its base preset plus its overrides.
    """
    if (experiment is None) == (sweep is None):
        raise ExpkitError("give --experiment or --sweep (one of them)", hint=LIST_HINT)
    if export and not sweep:
        raise ExpkitError("--export needs --sweep PARENT_RUN_ID", key="--export")
    if sweep:
        check_ref(sweep)
    metric = metric or OBJECTIVE
    client, resolved = open_client(uri)
    with store_errors(resolved):
        if sweep:
            parent = find_run(client, resolved, sweep)
            runs = search_all(
                client, [parent.info.experiment_id], f"tags.`{PARENT_TAG}` = '{parent.info.run_id}' and attributes.status = 'FINISHED'"
            )
            where = f"sweep {short(parent.info.run_id)}"
        else:
            exp = find_experiment(client, resolved, str(experiment))
            runs = search_all(client, [exp.experiment_id], "attributes.status = 'FINISHED'")
            where = f"'{experiment}'"
    if not runs:
        raise ExpkitError(f"{where} has no finished runs", hint=LIST_HINT)
    check_metric(runs, metric, f"the finished runs of {where}")
    direction = resolve_mode(metric, mode, runs)
    ranked = [r for r in rank(runs, metric, direction) if metric_of(r, metric) is not None]
    best = ranked[0]
    tags = best.data.tags
    print(f"best of {len(ranked)} finished run(s) in {where} by {describe_metric(metric, ranked, direction)}:")
    fields: list[tuple[str, str]] = [
        ("run id", best.info.run_id),
        ("name", best.info.run_name or MISSING),
        (metric, format_value(metric_of(best, metric))),
        *((m, format_value(metric_of(best, m))) for m in key_metrics([best]) if m != metric),
        ("started", started(best)),
    ]
    for tag, label in (("preset", "preset"), ("overrides", "overrides"), (PARENT_TAG, "sweep parent"), ("output_dir", "outputs")):
        if tags.get(tag):
            fields.append((label, tags[tag]))
    if tags.get("model_uri"):
        fields.append(("model", tags["model_uri"]))
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        print(f"  {key.ljust(width)}  {value}")
    varied = [p for p in differing_params(ranked) if not p.startswith("paths.")]
    if varied:
        print("  params that vary across these runs (best run's values):")
        pwidth = max(len(p) for p in varied)
        for p in varied:
            print(f"    {p.ljust(pwidth)}  {best.data.params.get(p, MISSING)}")
    if export:
        from expkit.selection.export import export_preset

        path = export_preset(best, Path(export))
        print(f"wrote {path}: retrain it with `expkit train --config-dir {path.parent.parent} +experiment={path.stem}`")


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on host:port (so the server could not bind it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def ui_command(uri: str, host: str, port: int) -> list[str]:
    """The `mlflow server` command line for the store `uri`."""
    command = [sys.executable, "-m", "expkit.tracking.quiet_server", "server", "--backend-store-uri", uri, "--registry-store-uri", uri]
    # No line per HTTP request, no uvicorn start-up INFO lines (expkit ui prints where to open it); warnings and errors still show.
    command += ["--host", host, "--port", str(port), "--workers", "1", "--uvicorn-opts", "--log-level warning --no-access-log"]
    path = local_store_path(uri)
    if path is not None and path.is_file():
        # Experiments expkit created point at file://<root>/mlartifacts; the server reads those directly.
        # Experiments created in the UI get proxied artifacts in the same folder.
        command += ["--artifacts-destination", str(path.parent / "mlartifacts")]
    return command


def sqlite_file(uri: str) -> Path | None:
    """The file of a local SQLite store that exists; None for any other store."""
    path = local_store_path(uri)
    return path if uri.startswith("sqlite:") and path is not None and path.is_file() else None


def read_only(db_file: Path) -> Any:
    """A read-only connection to a SQLite file, closed on leaving the `with` block."""
    import sqlite3

    return contextlib.closing(sqlite3.connect(f"{db_file.as_uri()}?mode=ro", uri=True))


@dataclass
class StoredRunInfo:
    run_id: str
    experiment_id: str
    run_name: str | None
    status: str
    start_time: int | None


@dataclass
class StoredRunData:
    metrics: dict[str, float]
    tags: dict[str, str]


@dataclass
class StoredRun:
    """The fields of an MLflow `Run` that `runs list` shows, read straight from a SQLite store."""

    info: StoredRunInfo
    data: StoredRunData


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
            runs = {r[0]: StoredRun(StoredRunInfo(r[0], str(r[1]), r[2], r[3], r[4]), StoredRunData({}, {})) for r in rows}
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


def serve_ui(*, host: str, port: int, uri: str | None) -> None:
    """Run the MLflow UI (`mlflow server`) on the store expkit writes to, in the foreground."""
    resolved = resolve_uri(uri)
    if urlparse(resolved).scheme in ("http", "https"):
        raise ExpkitError(f"the tracking URI {resolved} is already an MLflow server", hint="open it in a browser")
    check_store(resolved)
    if not 0 < port < 65536:
        raise ExpkitError(f"not a port: {port}", key="--port")
    if port_in_use(host, port):
        raise ExpkitError(f"port {port} on {host} is already in use", key="--port", hint="pick another one with --port")
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    print(f"MLflow UI for {resolved}")
    print(f"  open {base}/#/experiments?{TRAINING_VIEW_QUERY}  (it takes a few seconds to start; Ctrl+C stops it)")
    for experiment_id, name, count, has_view in experiment_pages(resolved):
        view = f"&viewStateShareKey={TABLE_VIEW_KEY}" if has_view else ""  # the table with its metric columns shown
        print(f"  {name} ({count} run{'' if count == 1 else 's'}): {base}/#/experiments/{experiment_id}/runs?{TRAINING_VIEW_QUERY}{view}")
    sys.stdout.flush()
    command = ui_command(resolved, host, port)
    # The server's job runner (for GenAI evaluation jobs) is not needed to browse runs, and slows start-up.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    sys.stderr.flush()
    if os.name == "posix":
        os.execv(sys.executable, command)
    with contextlib.suppress(KeyboardInterrupt):
        code = subprocess.call(command)
        if code:
            raise ExpkitError(f"the MLflow server exited with code {code}")
