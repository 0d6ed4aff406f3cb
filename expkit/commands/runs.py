"""`expkit runs list|compare|best` and `expkit ui`: reading recorded runs."""

from __future__ import annotations

import typer

from expkit.commands.common import URI_HELP, guarded

runs_app = typer.Typer(help="Read recorded runs: list, compare, best.", no_args_is_help=True)


@runs_app.command("list")
def runs_list(
    experiment: str | None = typer.Option(None, "--experiment", "-e", help="Only this experiment"),
    uri: str | None = typer.Option(None, "--uri", help=URI_HELP),
    limit: int = typer.Option(50, help="At most this many runs, newest first"),
) -> None:
    """List runs: id, experiment, name, status, start time, key metrics."""
    from expkit import runs

    guarded(lambda: runs.list_runs(experiment=experiment, uri=uri, limit=limit))


@runs_app.command("compare")
def runs_compare(
    run_ids: list[str] = typer.Argument(None, help="Run ids to compare"),
    sweep: str | None = typer.Option(None, "--sweep", help="Compare the children of this parent (sweep) run"),
    metric: str | None = typer.Option(None, "--metric", "-k", help="Sort by this metric (default: objective, each run's validation score)"),
    mode: str = typer.Option("auto", help="min, max, or auto (max for accuracy-like metrics)"),
    uri: str | None = typer.Option(None, "--uri", help=URI_HELP),
) -> None:
    """A table of the params that differ between runs, plus their key metrics, best first."""
    from expkit import runs

    guarded(lambda: runs.compare_runs(run_ids=list(run_ids or []), sweep=sweep, metric=metric, mode=mode, uri=uri))


@runs_app.command("best")
def runs_best(
    experiment: str | None = typer.Option(None, "--experiment", "-e", help="Experiment name"),
    sweep: str | None = typer.Option(None, "--sweep", help="The best child of this sweep's parent run"),
    metric: str | None = typer.Option(None, "--metric", "-k", help="Metric to rank by (default: objective, the validation score)"),
    mode: str = typer.Option("auto", help="min, max, or auto (the objective's recorded direction; max for accuracy-like metrics)"),
    export: str | None = typer.Option(None, "--export", help="With --sweep: write the winner as a preset, DIR/experiment/NAME.yaml"),
    uri: str | None = typer.Option(None, "--uri", help=URI_HELP),
) -> None:
    """The best finished run of an experiment or a sweep, by the objective unless --metric says otherwise."""
    from expkit import runs

    guarded(lambda: runs.best_run(experiment=experiment, sweep=sweep, metric=metric, mode=mode, uri=uri, export=export))


def ui(
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 127.0.0.1 keeps it private to this machine"),
    port: int = typer.Option(5000, help="Port"),
    uri: str | None = typer.Option(None, "--uri", help=URI_HELP),
) -> None:
    """Start the MLflow UI on the same store expkit writes to."""
    from expkit import runs

    guarded(lambda: runs.serve_ui(host=host, port=port, uri=uri))
