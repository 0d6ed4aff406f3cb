"""The `expkit` command. Thin: `train`, `show` and `validate` hand over to the Hydra app; nothing heavy is imported at start-up."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import NoReturn

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


def _run_hydra(args: list[str], action: str, force: bool = False, build: bool = False) -> None:
    """Call the Hydra app with `args` as its command line."""
    from expkit.config.overrides import check_overrides

    if not any(a in ("--help", "-h", "--hydra-help", "--info", "-i") or a.startswith("--info") for a in args):
        composed: list[object] = []
        _guarded(lambda: composed.append(check_overrides(args)))
        if action != "show" and not any(a in ("--cfg", "-c") or a.startswith("--cfg=") for a in args):
            from expkit.launch_check import check_command  # the config and its data, before Hydra makes a folder or a run exists

            _guarded(lambda: check_command(args, composed[0]))
    from expkit import app as hydra_app

    invocation = hydra_app.Invocation(action=action, force=force, build=build)
    import warnings

    # expkit's hydra/launcher/ray.yaml deliberately replaces the Ray plugin's config of the same name.
    warnings.filterwarnings("ignore", message=r"(?s).*is validated against ConfigStore schema with the same name")
    try:
        hydra_app.run(args, invocation)
    except hydra_app.SweepAborted as stop:
        from expkit.tracking.sweep import end_parent

        end_parent("FAILED", str(stop))
        typer.echo(f"error: {stop}", err=True)
        raise typer.Exit(getattr(stop, "exit_code", 1)) from None
    except SystemExit as stop:
        # Hydra exits 1 on a config it could not compose: that is a user error.
        if stop.code == 1 and not invocation.task_started:
            raise typer.Exit(2) from None
        raise
    except Exception as exc:
        if invocation.task_started:
            raise  # a failure inside expkit's own task is a bug: keep the traceback
        # Hydra failed while setting up the run (output folder, logging) from the config it was given.
        _fail(Exception(f"Hydra could not start the run: {exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
    finally:
        from expkit.tracking.parent import handoff

        if handoff().parent_file:  # a joblib sweep stopped early may still be creating its parent run
            from expkit.tracking.sweep import finish_opening

            finish_opening()
        if handoff().parent_run_id:  # a multirun stopped without reaching its end (Ctrl+C): close its parent run
            from expkit.tracking.sweep import end_parent

            end_parent("KILLED", "the sweep was interrupted")


@app.command(context_settings=HYDRA_ARGS)
def train(ctx: typer.Context) -> None:
    """Train, evaluate and log an experiment. Any Hydra arguments: overrides, -m, --cfg job, --config-dir DIR, hydra/launcher=joblib."""
    _run_hydra(list(ctx.args), "train")


@app.command(context_settings=HYDRA_ARGS)
def show(ctx: typer.Context) -> None:
    """Print the composed, resolved config for these overrides (no TensorFlow import)."""
    _run_hydra([*ctx.args, "--cfg", "job", "--resolve"], "show")


@app.command(context_settings=HYDRA_ARGS)
def validate(
    ctx: typer.Context, build: bool = typer.Option(False, "--build", help="Also build the model: print its summary and parameter count")
) -> None:
    """Check a config against the schema and Keras' signatures without training."""
    _run_hydra(list(ctx.args), "validate", build=build)


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
    _run_hydra(args, "resume", force=force)


@app.command("list")
def list_options() -> None:
    """List experiment presets and the options of every config group."""
    from expkit.config.locate import group_options, groups

    for group in groups():
        options = group_options(group)
        if options:
            typer.echo(f"{group}: {', '.join(options)}")
    from expkit.data.named import all_source_names

    typer.echo(f"dataset sources (dataset.source): {', '.join(all_source_names())}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def reproduce(
    ctx: typer.Context,
    data_dir: str | None = typer.Option(None, "--data-dir", help="Folder with the datasets (mnist.npz, ...); default $EXPKIT_DATA_DIR"),
    quick: bool = typer.Option(False, "--quick", help="Only the targets marked quick (the CI set)"),
    repeats: int = typer.Option(1, "--repeats", help="Runs per target, seeds 42, 43, ...; the mean is compared with the band"),
    targets: str | None = typer.Option(None, "--targets", help="Targets file (default: experiments/targets.yaml)"),
    results: str | None = typer.Option(None, "--results", help="Where to write the report (default: RESULTS.md beside the targets)"),
    require_data: bool = typer.Option(False, "--require-data", help="A target whose data is missing fails instead of being skipped"),
    timeout: float = typer.Option(3600, "--timeout", help="Seconds one run may take"),
) -> None:
    """Run book presets as tracked runs under one parent run, compare with their bands. Args: [TARGET...] [OVERRIDES...]."""
    from expkit import reproduce as repro

    code: list[int] = []
    _guarded(
        lambda: code.append(
            repro.reproduce(
                list(ctx.args),
                data_dir=data_dir,
                quick=quick,
                repeats=repeats,
                targets_path=targets,
                results_path=results,
                require_data=require_data,
                timeout=timeout,
            )
        )
    )
    raise typer.Exit(code[0] if code else 2)


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
    metric: str | None = typer.Option(None, "--metric", "-k", help="Sort by this metric (default: objective, each run's validation score)"),
    mode: str = typer.Option("auto", help="min, max, or auto (max for accuracy-like metrics)"),
    uri: str | None = typer.Option(None, "--uri", help=URI_HELP),
) -> None:
    """A table of the params that differ between runs, plus their key metrics, best first."""
    from expkit import runs

    _guarded(lambda: runs.compare_runs(run_ids=list(run_ids or []), sweep=sweep, metric=metric, mode=mode, uri=uri))


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

    _guarded(lambda: runs.best_run(experiment=experiment, sweep=sweep, metric=metric, mode=mode, uri=uri, export=export))


@app.command()
def predict(
    target: str = typer.Argument(..., help="A run id (or unique prefix), or a model URI such as models:/m-..."),
    input: str = typer.Option(..., "--input", "-i", help="Raw samples: .npz (key x / x_test / inputs), .npy, .csv, or a folder of images"),
    output: str = typer.Option("predictions.csv", "--output", "-o", help="CSV to write, one row per sample"),
    probabilities: bool = typer.Option(False, "--probabilities", help="Also write each class's probability"),
    uri: str | None = typer.Option(None, "--uri", help=URI_HELP),
) -> None:
    """Predict with a run's raw-input model: inputs in the dataset's own form (e.g. uint8 images), classes out."""
    from pathlib import Path

    def run() -> None:
        from expkit.serving.predict import predict_file

        count = predict_file(target, Path(input), Path(output), uri=uri, probabilities=probabilities)
        typer.echo(f"{count} prediction(s) written to {output}")

    _guarded(run)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def evaluate(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="The run whose model to evaluate"),
    split: str = typer.Option("test", "--split", help="test, validation or train"),
    name: str | None = typer.Option(None, "--name", help="Metric prefix eval/NAME/... (default: DATASET_SPLIT)"),
    uri: str | None = typer.Option(None, "--uri", help=URI_HELP),
) -> None:
    """Re-evaluate a trained run on another split or dataset (dataset.KEY=VALUE overrides); logs eval/NAME/* to the same run."""

    def run() -> None:
        from expkit.serving.evaluate import evaluate as evaluate_run
        from expkit.tracking.table import format_value

        _, metrics = evaluate_run(run_id, list(ctx.args), split=split, name=name, uri=uri)
        for key, value in metrics.items():
            typer.echo(f"{key}: {format_value(value)}")

    _guarded(run)


@app.command()
def ensemble(
    run_ids: list[str] = typer.Argument(..., help="Two or more run ids of the same dataset"),
    weights: str | None = typer.Option(None, "--weights", help="Comma-separated member weights (default: equal)"),
    fit_weights: bool = typer.Option(False, "--fit-weights", help="Fit the weights on the validation split (never on test)"),
    uri: str | None = typer.Option(None, "--uri", help=URI_HELP),
) -> None:
    """Average several runs' predictions; print member and ensemble test metrics; log the ensemble as a run."""

    def run() -> None:
        from expkit.serving.ensemble import ensemble as make_ensemble
        from expkit.serving.ensemble import render

        typer.echo(render(make_ensemble(list(run_ids), weights=weights, fit=fit_weights, uri=uri)))

    _guarded(run)


@app.command()
def ui(
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 127.0.0.1 keeps it private to this machine"),
    port: int = typer.Option(5000, help="Port"),
    uri: str | None = typer.Option(None, "--uri", help=URI_HELP),
) -> None:
    """Start the MLflow UI on the same store expkit writes to."""
    from expkit import runs

    _guarded(lambda: runs.serve_ui(host=host, port=port, uri=uri))


server_app = typer.Typer(help="Start a team MLflow server, and manage its users.")
app.add_typer(server_app, name="server")


@server_app.callback(invoke_without_command=True)
def server(
    ctx: typer.Context,
    root: str = typer.Option(".", "--root", help="Folder for the server's mlflow.db and mlartifacts/ (default: this folder)"),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 127.0.0.1 keeps it private; any other address needs --auth"),
    port: int = typer.Option(5000, help="Port"),
    backend_store_uri: str | None = typer.Option(None, "--backend-store-uri", help="Runs database (default: sqlite:///ROOT/mlflow.db)"),
    workers: int = typer.Option(1, help="Server worker processes"),
    allowed_hosts: str | None = typer.Option(None, "--allowed-hosts", help="Host headers MLflow accepts (default: localhost, private IPs)"),
    auth: bool = typer.Option(False, "--auth", help="Users and permissions (MLflow basic-auth); password: $MLFLOW_AUTH_ADMIN_PASSWORD"),
    admin: str = typer.Option("admin", "--admin", envvar="MLFLOW_AUTH_ADMIN_USERNAME", help="The admin user's name (with --auth)"),
    admin_password_file: str | None = typer.Option(None, "--admin-password-file", help="Read the admin password from this file"),
    auth_db_uri: str | None = typer.Option(None, "--auth-db-uri", help="Users database (default: sqlite:///ROOT/basic_auth.db)"),
    default_permission: str = typer.Option("READ", "--default-permission", help="What a user may do without a grant"),
    insecure: bool = typer.Option(False, "--insecure", help="Serve a non-loopback address without auth (trusted networks only)"),
) -> None:
    """Start a team MLflow server (proxied artifacts) that sweep jobs on other machines log to; prints the tracking URI."""
    if ctx.invoked_subcommand is not None:
        return
    from pathlib import Path

    from expkit.tracking.server import Auth, serve

    password_file = Path(admin_password_file) if admin_password_file else None
    login = Auth(admin, password_file, auth_db_uri, default_permission.upper()) if auth else None
    _guarded(
        lambda: serve(
            root=Path(root),
            backend_uri=backend_store_uri,
            host=host,
            port=port,
            workers=workers,
            allowed_hosts=allowed_hosts,
            auth=login,
            insecure=insecure,
        )
    )


user_app = typer.Typer(help="Users of a server started with --auth (as the admin in $MLFLOW_TRACKING_USERNAME/_PASSWORD).")
server_app.add_typer(user_app, name="user")
SERVER_URI_HELP = "The server (default: $MLFLOW_TRACKING_URI)"


def _server_uri(uri: str | None) -> str:
    import os

    from expkit.errors import ExpkitError

    found = uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not found.startswith(("http://", "https://")):
        raise ExpkitError("which server?", key="--uri", hint="pass --uri http://HOST:PORT or set MLFLOW_TRACKING_URI")
    return found


@user_app.command("add")
def user_add(
    name: str = typer.Argument(..., help="The new user's name"),
    password_file: str | None = typer.Option(None, "--password-file", help="Read the password from this file (else it is asked for)"),
    uri: str | None = typer.Option(None, "--uri", help=SERVER_URI_HELP),
) -> None:
    """Create a user (the password is read from a file or asked for; it is never an argument)."""
    from pathlib import Path

    from expkit.tracking import auth

    def add() -> None:
        target = _server_uri(uri)
        if password_file:
            lines = Path(password_file).expanduser().read_text().splitlines()
            password = lines[0] if lines else ""
        else:
            password = typer.prompt(f"password for {name}", hide_input=True, confirmation_prompt=True)
        auth.add_user(target, name, password)
        print(f"user {name} created on {target}")

    _guarded(add)


@user_app.command("grant")
def user_grant(
    name: str = typer.Argument(..., help="The user"),
    experiment: str = typer.Argument(..., help="Experiment name (created if new)"),
    permission: str = typer.Argument(..., help="READ, EDIT, MANAGE or NO_PERMISSIONS"),
    uri: str | None = typer.Option(None, "--uri", help=SERVER_URI_HELP),
) -> None:
    """Give a user READ, EDIT or MANAGE on one experiment."""
    from expkit.tracking import auth

    def grant() -> None:
        target = _server_uri(uri)
        experiment_id = auth.grant(target, name, experiment, permission)
        print(f"{name}: {permission.upper()} on experiment {experiment} ({experiment_id})")

    _guarded(grant)


def main() -> None:
    """The `expkit` command."""
    quiet_start()
    try:
        app()
    except SystemExit as done:
        stop_idle_workers()
        if "tensorflow" not in sys.modules and "mlflow" not in sys.modules:
            raise
        exit_now(done.code)


def quiet_start() -> None:
    """Keep libraries' start-up chatter out of every command's output (train, sweeps, predict, evaluate, resume, ui).

    TensorFlow's first import, by whatever path, drops its oneDNN and absl notices (`expkit.backend`); MLflow logs
    warnings and errors only (its INFO lines, such as "Creating initial MLflow database tables", say nothing a user acts on).
    Setting MLFLOW_LOGGING_LEVEL yourself wins. Both are cheap: nothing heavy is imported here.
    """
    import logging

    from expkit.backend import quiet_tensorflow_import

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # "generated new fontManager" on a new machine
    # Jobs of a sweep run one after another in one process each build new models, so TensorFlow sees new functions
    # and warns "N out of the last M calls ... triggered tf.function retracing": expected here, and nothing to act on.
    tf_log = logging.getLogger("tensorflow")
    if _not_retracing not in tf_log.filters:
        tf_log.addFilter(_not_retracing)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    quiet_tensorflow_import()


def _not_retracing(record: object) -> bool:
    return "triggered tf.function retracing" not in str(getattr(record, "msg", ""))


def exit_now(code: object) -> NoReturn:
    """End a process that trained a model as Python would, minus the interpreter's teardown.

    Threads are joined, atexit handlers run and output is flushed; freeing TensorFlow's runtime and
    every module's objects, which takes 1.3-2 s after a run and writes nothing, is skipped.
    """
    import atexit
    import threading

    if isinstance(code, str):
        print(code, file=sys.stderr)
    status = code if isinstance(code, int) else (0 if code is None else 1)
    shutdown = getattr(threading, "_shutdown", None)  # joins non-daemon threads, as the interpreter does first
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def stop_idle_workers() -> None:
    """Kill the idle worker processes a joblib sweep leaves (loky keeps them for reuse).

    Left alone, each outlives this process by the seconds TensorFlow's teardown takes, holding its
    stdout and stderr open, so a pipe reading the sweep's output does not end until they do. Every
    job has ended its run, closed its files and flushed its output before it returned.
    """
    module = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(module, "_executor", None)  # the pool joblib reuses, if one was started
    if executor is not None:
        with contextlib.suppress(Exception):
            executor.shutdown(wait=True, kill_workers=True)


if __name__ == "__main__":
    main()
