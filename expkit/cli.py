"""The `expkit` command. Thin: `train`, `show` and `validate` hand over to the Hydra app; nothing heavy is imported at start-up."""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

HYDRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}

app = typer.Typer(
    help="Config-driven Keras experiments, tracked in MLflow. Overrides use Hydra syntax: key=value, group=option, +experiment=NAME.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(error: Exception) -> None:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(2)


def _guarded(action: Callable[[], None]) -> None:
    """Run `action`; a user error becomes one message and exit code 2."""
    from expkit.errors import ExpkitError

    try:
        action()
    except ExpkitError as error:
        _fail(error)


def _run_hydra(args: list[str], action: str) -> None:
    """Call the Hydra app with `args` as its command line."""
    from expkit.config.overrides import check_overrides

    if not any(a in ("--help", "-h", "--hydra-help", "--info", "-i") or a.startswith("--info") for a in args):
        _guarded(lambda: check_overrides(args))
    from expkit import app as hydra_app

    hydra_app.ACTION = action
    sys.argv = ["expkit", *args]
    import warnings

    # expkit's hydra/launcher/ray.yaml deliberately replaces the Ray plugin's config of the same name.
    warnings.filterwarnings("ignore", message=r"(?s).*is validated against ConfigStore schema with the same name")
    try:
        hydra_app.main()
    except SystemExit as stop:
        # Hydra exits 1 on a config it could not compose: that is a user error.
        if stop.code == 1 and not hydra_app.TASK_STARTED:
            raise typer.Exit(2) from None
        raise
    except Exception as exc:
        if hydra_app.TASK_STARTED:
            raise  # a failure inside expkit's own task is a bug: keep the traceback
        # Hydra failed while setting up the run (output folder, logging) from the config it was given.
        _fail(Exception(f"Hydra could not start the run: {exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))


@app.command(context_settings=HYDRA_ARGS)
def train(ctx: typer.Context) -> None:
    """Train, evaluate and log an experiment. Any Hydra arguments: overrides, -m, --cfg job, --config-dir DIR, hydra/launcher=joblib."""
    _run_hydra(list(ctx.args), "train")


@app.command(context_settings=HYDRA_ARGS)
def show(ctx: typer.Context) -> None:
    """Print the composed, resolved config for these overrides (no TensorFlow import)."""
    _run_hydra([*ctx.args, "--cfg", "job", "--resolve"], "show")


@app.command(context_settings=HYDRA_ARGS)
def validate(ctx: typer.Context) -> None:
    """Check a config against the schema and Keras' signatures without training."""
    _run_hydra(list(ctx.args), "validate")


@app.command()
def resume(
    target: str = typer.Argument("latest", help="latest (newest unfinished run), a run folder, or an MLflow run id"),
    force: bool = typer.Option(False, "--force", help="Resume even if the config changed since the run started"),
) -> None:
    """Continue a stopped or crashed run from its last completed epoch, in the same MLflow run."""
    from pathlib import Path

    from expkit.outputs import find_run_dir, stored_arguments

    def locate() -> list[str]:
        run_dir = find_run_dir(target, Path.cwd())
        return [*stored_arguments(run_dir), f"hydra.run.dir='{run_dir}'"]

    args: list[str] = []
    _guarded(lambda: args.extend(locate()))
    from expkit import app as hydra_app

    hydra_app.FORCE = force
    _run_hydra(args, "resume")


@app.command("list")
def list_options() -> None:
    """List experiment presets and the options of every config group."""
    from expkit.config.locate import group_options, groups

    for group in groups():
        options = group_options(group)
        if options:
            typer.echo(f"{group}: {', '.join(options)}")


runs_app = typer.Typer(help="Read recorded runs: list, compare, best.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")

URI_HELP = "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in this folder)"


@runs_app.command("list")
def runs_list(
    experiment: str | None = typer.Option(None, "--experiment", "-e", help="Only this experiment"),
    uri: str | None = typer.Option(None, "--uri", help=URI_HELP),
    limit: int = typer.Option(50, help="At most this many runs, newest first"),
) -> None:
    """List runs: id, experiment, name, status, start time, key metrics."""
    from expkit import runs

    _guarded(lambda: runs.list_runs(experiment=experiment, uri=uri, limit=limit))


@runs_app.command("compare")
def runs_compare(
    run_ids: list[str] = typer.Argument(None, help="Run ids to compare"),
    sweep: str | None = typer.Option(None, "--sweep", help="Compare the children of this parent (sweep) run"),
    metric: str | None = typer.Option(None, "--metric", "-k", help="Sort by this metric (default: test_loss)"),
    mode: str = typer.Option("auto", help="min, max, or auto (max for accuracy-like metrics)"),
    uri: str | None = typer.Option(None, "--uri", help=URI_HELP),
) -> None:
    """A table of the params that differ between runs, plus their key metrics, best first."""
    from expkit import runs

    _guarded(lambda: runs.compare_runs(run_ids=list(run_ids or []), sweep=sweep, metric=metric, mode=mode, uri=uri))


@runs_app.command("best")
def runs_best(
    experiment: str = typer.Option(..., "--experiment", "-e", help="Experiment name"),
    metric: str = typer.Option(..., "--metric", "-k", help="Metric to rank by, e.g. test_accuracy"),
    mode: str = typer.Option("auto", help="min, max, or auto (max for accuracy-like metrics)"),
    uri: str | None = typer.Option(None, "--uri", help=URI_HELP),
) -> None:
    """The best finished run of an experiment by one metric."""
    from expkit import runs

    _guarded(lambda: runs.best_run(experiment=experiment, metric=metric, mode=mode, uri=uri))


@app.command()
def ui(
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 127.0.0.1 keeps it private to this machine"),
    port: int = typer.Option(5000, help="Port"),
    uri: str | None = typer.Option(None, "--uri", help=URI_HELP),
) -> None:
    """Start the MLflow UI on the same store expkit writes to."""
    from expkit import runs

    _guarded(lambda: runs.serve_ui(host=host, port=port, uri=uri))


@app.command()
def server(
    root: str = typer.Option(".", "--root", help="Folder for the server's mlflow.db and mlartifacts/ (default: this folder)"),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 127.0.0.1 keeps it private, 0.0.0.0 lets other machines log"),
    port: int = typer.Option(5000, help="Port"),
    backend_store_uri: str | None = typer.Option(None, "--backend-store-uri", help="Runs database (default: sqlite:///ROOT/mlflow.db)"),
    workers: int = typer.Option(1, help="Server worker processes"),
    allowed_hosts: str | None = typer.Option(None, "--allowed-hosts", help="Host headers MLflow accepts (default: localhost, private IPs)"),
) -> None:
    """Start a team MLflow server (proxied artifacts) that sweep jobs on other machines log to; prints the tracking URI."""
    from pathlib import Path

    from expkit.tracking.server import serve

    _guarded(
        lambda: serve(root=Path(root), backend_uri=backend_store_uri, host=host, port=port, workers=workers, allowed_hosts=allowed_hosts)
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
