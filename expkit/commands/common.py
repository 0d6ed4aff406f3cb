"""What every command shares: a user error becomes one message and exit code 2."""

from __future__ import annotations

from collections.abc import Callable

import typer

URI_HELP = "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in this folder)"


def fail(error: Exception) -> None:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(2)


def guarded(action: Callable[[], None]) -> None:
    """Run `action`; a user error becomes one message and exit code 2."""
    from expkit.errors import ExpkitError

    try:
        action()
    except ExpkitError as error:
        fail(error)
