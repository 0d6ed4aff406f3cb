"""`expkit server` (a team MLflow server) and `expkit server user add|grant`."""

from __future__ import annotations

import typer

from expkit.commands.common import guarded

server_app = typer.Typer(help="Start a team MLflow server, and manage its users.")


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
    guarded(
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

    guarded(add)


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

    guarded(grant)
