"""CLI read paths over recorded runs: list, compare, best, and the MLflow UI.

Everything here reads the same store `expkit train` writes to (see `expkit.tracking.store.tracking_uri`).
MLflow is imported inside the functions so that `expkit --help` stays fast.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

from expkit.errors import ExpkitError
from expkit.tracking.query import (
    LIST_HINT,
    PARENT_TAG,
    check_ref,
    check_store,
    experiments,
    find_experiment,
    find_run,
    open_client,
    resolve_uri,
    search_all,
    store_errors,
)
from expkit.tracking.ranking import (
    OBJECTIVE,
    check_metric,
    describe_metric,
    differing_params,
    key_metrics,
    metric_of,
    rank,
    rank_metric,
    resolve_mode,
    unranked_reason,
)
from expkit.tracking.sqlite_runs import experiment_pages, read_sqlite_runs
from expkit.tracking.store import TABLE_VIEW_KEY, TRAINING_VIEW_QUERY
from expkit.tracking.table import MISSING, clip, format_value, render_table, short, started
from expkit.tracking.ui import port_in_use, ui_command


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
