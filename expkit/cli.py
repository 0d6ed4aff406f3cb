"""The `expkit` command. Thin: `train`, `show` and `validate` hand over to the Hydra app; nothing heavy is imported at start-up."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import NoReturn

import typer

from expkit.commands import runs as run_commands
from expkit.commands import server as server_commands
from expkit.commands import serving as serving_commands
from expkit.commands.common import fail as _fail
from expkit.commands.common import guarded as _guarded

HYDRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}

app = typer.Typer(
    help="Config-driven Keras experiments, tracked in MLflow. Overrides use Hydra syntax: key=value, group=option, +experiment=NAME.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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
    from expkit.data.catalog import all_source_names

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


# The other commands live in expkit/commands/, registered here in the order `expkit --help` lists them.
app.command()(serving_commands.predict)
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(serving_commands.evaluate)
app.command()(serving_commands.ensemble)
app.command()(run_commands.ui)
app.add_typer(run_commands.runs_app, name="runs")
app.add_typer(server_commands.server_app, name="server")


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
