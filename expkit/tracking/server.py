"""`expkit server`: one MLflow server for a team, with proxied artifacts, that sweep jobs on any machine log to."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from expkit.errors import ExpkitError


@dataclass(frozen=True)
class Auth:
    """`expkit server --auth`: the admin's name, where the password is (else $MLFLOW_AUTH_ADMIN_PASSWORD), the user store."""

    admin: str = "admin"
    password_file: Path | None = None
    db_uri: str | None = None
    default_permission: str = "READ"


def server_command(
    backend_uri: str,
    artifacts_dir: Path,
    host: str,
    port: int,
    workers: int = 1,
    allowed_hosts: str | None = None,
    auth: bool = False,
) -> list[str]:
    """`mlflow server` with proxied artifacts: clients upload plots and models through HTTP, no shared file system needed.

    With `auth`, MLflow's basic-auth app (users and per-experiment permissions); its config comes through the environment.
    """
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend_uri,
        "--serve-artifacts", "--artifacts-destination", str(artifacts_dir),
        "--host", host, "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip
    command += ["--app-name", "basic-auth"] if auth else []
    return command + (["--allowed-hosts", allowed_hosts] if allowed_hosts else [])


def client_uri(host: str, port: int) -> str:
    """The tracking URI clients on this machine use for a server bound to host:port."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(
    *,
    root: Path,
    backend_uri: str | None,
    host: str,
    port: int,
    workers: int,
    allowed_hosts: str | None = None,
    auth: Auth | None = None,
    insecure: bool = False,
) -> None:
    """Run a team MLflow server in the foreground: SQLite under `root` and proxied artifacts under root/mlartifacts by default.

    A non-loopback `host` needs `auth` (or `insecure`, which warns); see `expkit.tracking.auth`.
    """
    from expkit.tracking import auth as basic_auth
    from expkit.tracking.new_store import seed_new_store
    from expkit.tracking.store import store_lock
    from expkit.tracking.ui import port_in_use

    warning = basic_auth.check_bind(host, auth=auth is not None, insecure=insecure)
    if not 0 < port < 65536:
        raise ExpkitError(f"not a port: {port}", key="--port")
    root = root.expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    backend = backend_uri or f"sqlite:///{root / 'mlflow.db'}"
    if backend.startswith(("http:", "https:")):
        raise ExpkitError(f"--backend-store-uri {backend} is a server, not a database", key="--backend-store-uri")
    if port_in_use(host, port):
        raise ExpkitError(f"port {port} on {host} is already in use", key="--port", hint="pick another one with --port")
    with store_lock(backend):
        seed_new_store(backend)  # a new SQLite store: copied from a cached empty one, not migrated step by step
    artifacts = root / "mlartifacts"
    uri = client_uri(host, port)
    env = dict(os.environ)
    if auth is not None:
        password = basic_auth.admin_password(auth.password_file)
        auth_db = auth.db_uri or f"sqlite:///{root / 'basic_auth.db'}"
        env.update(basic_auth.server_env(root, auth_db, auth.default_permission, auth.admin, password))
    print(f"expkit team server: runs in {basic_auth.redact(backend)}, artifacts in {artifacts} (proxied: clients need no shared disk)")
    print(f"  tracking URI for every machine: {uri}")
    print(f"  use it with:  export MLFLOW_TRACKING_URI={uri}   or   expkit train tracking.uri={uri} ...")
    if auth is not None:
        print(f"  authentication on (MLflow basic-auth): users in {basic_auth.redact(auth_db)}, admin {auth.admin!r},")
        print(f"  default permission {auth.default_permission}; add users and grants with `expkit server user add|grant`")
        print(f"  clients: export {basic_auth.CLIENT_USER_ENV}=NAME {basic_auth.CLIENT_PASSWORD_ENV}=...")
    if warning:
        print(warning, file=sys.stderr)
    if basic_auth.is_loopback(host):
        print("  bound to this machine only; pass --host 0.0.0.0 --auth to let other machines log to it")
    elif not allowed_hosts:
        import socket

        name = socket.gethostname()
        print(f"  other machines: http://<this machine's private IP>:{port} (MLflow's default --allowed-hosts: localhost, private IPs);")
        print(f"  to use http://{name}:{port} instead, start with --allowed-hosts {name}:{port}")
    print("  it takes a few seconds to start; Ctrl+C stops it", flush=True)
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    command = server_command(backend, artifacts, host, port, workers, allowed_hosts, auth=auth is not None)
    if basic_auth.redact(backend) != backend:  # a database password: out of the process list (`ps`), into the environment
        at = command.index("--backend-store-uri")
        del command[at : at + 2]
        env["MLFLOW_BACKEND_STORE_URI"] = backend
    sys.stderr.flush()
    if os.name == "posix":
        os.execve(sys.executable, command, env)
    import subprocess

    code = subprocess.call(command, env=env)
    if code:
        raise ExpkitError(f"the MLflow server exited with code {code}")
