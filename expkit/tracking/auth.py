"""Authentication for `expkit server`: MLflow's own basic-auth app (`mlflow server --app-name basic-auth`).

expkit adds three guards around it and no auth layer of its own:
- a non-loopback bind without `--auth` is refused (exit 2) unless `--insecure`, which prints a warning;
- the admin password comes from `MLFLOW_AUTH_ADMIN_PASSWORD` or a file, never a default, and a store whose
  admin still has MLflow's old shipped default password does not start;
- the password reaches the server process through its environment only: the auth config file expkit writes
  (`ROOT/basic_auth.ini`) holds no secret.

Clients (training jobs, sweep workers on joblib, Ray or SLURM, `expkit server user`) authenticate with MLflow's
`MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`, read from the environment by MLflow itself.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from expkit.errors import ExpkitError

ADMIN_USER_ENV = "MLFLOW_AUTH_ADMIN_USERNAME"
ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
FLASK_KEY_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"
CLIENT_USER_ENV = "MLFLOW_TRACKING_USERNAME"
CLIENT_PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"
#: The password older MLflow versions shipped in basic_auth.ini: publicly known, so never accepted.
LEGACY_DEFAULT_PASSWORD = "password1234"
PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")
AUTH_HINT = f"add --auth (admin password in ${ADMIN_PASSWORD_ENV} or --admin-password-file), or --insecure on a trusted network"


def is_loopback(host: str) -> bool:
    """Whether `host` is an address only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name or 0.0.0.0/:: may reach other machines


def check_bind(host: str, *, auth: bool, insecure: bool) -> str | None:
    """Refuse an open server on a non-loopback address; returns the warning an `--insecure` one prints."""
    if auth or is_loopback(host):
        return None
    if not insecure:
        raise ExpkitError(
            f"refusing to serve on {host} without authentication: anyone who reaches the port could read, change or delete every run",
            key="--host",
            hint=AUTH_HINT,
        )
    return (
        f"WARNING: --insecure: the server on {host} has no authentication; anyone who reaches port and address can read, "
        "change or delete every run. Use it on a trusted network only; --auth is the secure way."
    )


def admin_password(password_file: Path | None) -> str:
    """The admin password from `password_file` (first line) or $MLFLOW_AUTH_ADMIN_PASSWORD; there is no default."""
    if password_file is not None:
        path = password_file.expanduser()
        if not path.is_file():
            raise ExpkitError(f"no such file: {path}", key="--admin-password-file")
        lines = path.read_text().splitlines()
        password, key = (lines[0] if lines else ""), "--admin-password-file"
    else:
        password, key = os.environ.get(ADMIN_PASSWORD_ENV, ""), ADMIN_PASSWORD_ENV
    if not password:
        raise ExpkitError(
            "--auth needs the admin password, and there is no default",
            key=key,
            hint=f"export {ADMIN_PASSWORD_ENV}=... (or put it in a file readable by you only and pass --admin-password-file FILE)",
        )
    if password == LEGACY_DEFAULT_PASSWORD:
        raise ExpkitError(
            "that is the default admin password older MLflow versions shipped: it is publicly known", key=key, hint="choose another one"
        )
    if len(password) < 12:
        raise ExpkitError("the admin password is shorter than 12 characters (MLflow's minimum)", key=key, hint="choose a longer one")
    return password


def write_auth_config(root: Path, database_uri: str, default_permission: str) -> Path:
    """MLflow's basic-auth config file (no password in it): where users live and what a user may do by default."""
    if default_permission not in PERMISSIONS:
        raise ExpkitError(f"unknown permission {default_permission}", key="--default-permission", hint="one of " + ", ".join(PERMISSIONS))
    path = root / "basic_auth.ini"
    path.write_text(
        "# Written by `expkit server --auth`. The admin password is not here: the server gets it from its environment.\n"
        "[mlflow]\n"
        f"default_permission = {default_permission}\n"
        f"database_uri = {database_uri}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    return path


def check_user_store(database_uri: str, username: str, password: str) -> None:
    """Refuse a user store whose admin has another password, or whose `admin` still has MLflow's old default.

    A store that is new, or whose admin `username` still has the old default, is fine: MLflow creates the admin,
    or replaces that password with the one given, as it starts.
    """
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(database_uri)
    try:
        rotating = store.authenticate_user(username, LEGACY_DEFAULT_PASSWORD)  # MLflow replaces the old default as it starts
        if store.has_user(username) and not rotating and not store.authenticate_user(username, password):
            raise ExpkitError(
                f"the admin user {username!r} in {redact(database_uri)} has another password than the one given",
                key=ADMIN_PASSWORD_ENV,
                hint="give the admin's current password (change it later through MLflow's update-password API)",
            )
        for other in {"admin"} - {username}:
            if store.has_user(other) and store.authenticate_user(other, LEGACY_DEFAULT_PASSWORD):
                raise ExpkitError(
                    f"user {other!r} in {redact(database_uri)} still has MLflow's old default password: the server does not start",
                    key="--auth-db-uri",
                    hint=f"start once with --admin {other} and a new {ADMIN_PASSWORD_ENV} (MLflow replaces the old one) or delete it",
                )
    finally:
        store.engine.dispose()


def server_env(root: Path, database_uri: str, default_permission: str, username: str, password: str) -> dict[str, str]:
    """The environment additions that make `mlflow server --app-name basic-auth` use this config and admin."""
    import secrets

    config = write_auth_config(root, database_uri, default_permission)
    check_user_store(database_uri, username, password)
    # The auth app signs its sign-up form (CSRF) with this key; a new one per start, shared by the workers, kept nowhere.
    key = os.environ.get(FLASK_KEY_ENV) or secrets.token_hex(32)
    return {"MLFLOW_AUTH_CONFIG_PATH": str(config), ADMIN_USER_ENV: username, ADMIN_PASSWORD_ENV: password, FLASK_KEY_ENV: key}


def redact(uri: str) -> str:
    """`uri` without the password of its user part (postgresql://user:SECRET@host/db -> postgresql://user:***@host/db)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def client(uri: str) -> object:
    """MLflow's client for the auth app's REST API (users, permissions), authenticated from the environment."""
    if not (os.environ.get(CLIENT_USER_ENV) and os.environ.get(CLIENT_PASSWORD_ENV)):
        hint = f"export {CLIENT_USER_ENV}=admin {CLIENT_PASSWORD_ENV}=..."
        raise ExpkitError("managing users needs an admin's credentials", key=CLIENT_USER_ENV, hint=hint)
    from mlflow.server.auth.client import AuthServiceClient

    return AuthServiceClient(uri)


def add_user(uri: str, username: str, password: str) -> None:
    """Create a user on the server at `uri` (as the admin in the environment)."""
    if not password:
        raise ExpkitError("a new user needs a password", key="--password-file")
    _call(lambda: client(uri).create_user(username, password), f"create user {username!r}")  # type: ignore[attr-defined]


def grant(uri: str, username: str, experiment: str, permission: str) -> str:
    """Give `username` READ, EDIT or MANAGE on `experiment` (created if new); returns the experiment id."""
    permission = permission.upper()
    if permission not in PERMISSIONS:
        raise ExpkitError(f"unknown permission {permission}", key="PERMISSION", hint="one of " + ", ".join(PERMISSIONS))
    import mlflow

    auth = client(uri)

    def experiment_id() -> str:
        store = mlflow.MlflowClient(uri)
        found = store.get_experiment_by_name(experiment)
        return found.experiment_id if found else store.create_experiment(experiment)

    eid = _call(experiment_id, f"find or create experiment {experiment!r}")
    _call(lambda: auth.grant_user_permission(username, "experiment", eid, permission), f"grant {permission} to {username!r}")  # type: ignore[attr-defined]
    return str(eid)


def _call(action, what: str):  # type: ignore[no-untyped-def]
    from mlflow.exceptions import MlflowException

    try:
        return action()
    except MlflowException as exc:
        reason = str(exc).splitlines()[0]
        raise ExpkitError(f"could not {what}: {reason}", hint="check the server URI and the admin's credentials") from None
