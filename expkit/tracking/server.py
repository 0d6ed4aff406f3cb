"""`expkit server`: one MLflow server for a team, with proxied artifacts, that sweep jobs on any machine log to."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from expkit.errors import ExpkitError


def server_command(
    backend_uri: str, artifacts_dir: Path, host: str, port: int, workers: int = 1, allowed_hosts: str | None = None
) -> list[str]:
    """`mlflow server` with proxied artifacts: clients upload plots and models through HTTP, no shared file system needed."""
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend_uri,
        "--serve-artifacts", "--artifacts-destination", str(artifacts_dir),
        "--host", host, "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip
    return command + (["--allowed-hosts", allowed_hosts] if allowed_hosts else [])


def client_uri(host: str, port: int) -> str:
    """The tracking URI clients on this machine use for a server bound to host:port."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(*, root: Path, backend_uri: str | None, host: str, port: int, workers: int, allowed_hosts: str | None = None) -> None:
    """Run a team MLflow server in the foreground: SQLite under `root` and proxied artifacts under root/mlartifacts by default."""
    from expkit.runs import port_in_use

    if not 0 < port < 65536:
        raise ExpkitError(f"not a port: {port}", key="--port")
    root = root.expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    backend = backend_uri or f"sqlite:///{root / 'mlflow.db'}"
    if backend.startswith(("http:", "https:")):
        raise ExpkitError(f"--backend-store-uri {backend} is a server, not a database", key="--backend-store-uri")
    if port_in_use(host, port):
        raise ExpkitError(f"port {port} on {host} is already in use", key="--port", hint="pick another one with --port")
    artifacts = root / "mlartifacts"
    uri = client_uri(host, port)
    print(f"expkit team server: runs in {backend}, artifacts in {artifacts} (proxied: clients need no shared disk)")
    print(f"  tracking URI for every machine: {uri}")
    print(f"  use it with:  export MLFLOW_TRACKING_URI={uri}   or   expkit train tracking.uri={uri} ...")
    if host in ("127.0.0.1", "localhost", "::1"):
        print("  bound to this machine only; pass --host 0.0.0.0 (on a trusted network) to let other machines log to it")
    elif not allowed_hosts:
        import socket

        name = socket.gethostname()
        print(f"  other machines: http://<this machine's private IP>:{port} (MLflow's default --allowed-hosts: localhost, private IPs);")
        print(f"  to use http://{name}:{port} instead, start with --allowed-hosts {name}:{port}")
    print("  it takes a few seconds to start; Ctrl+C stops it", flush=True)
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    command = server_command(backend, artifacts, host, port, workers, allowed_hosts)
    sys.stderr.flush()
    if os.name == "posix":
        os.execv(sys.executable, command)
    import subprocess

    code = subprocess.call(command)
    if code:
        raise ExpkitError(f"the MLflow server exited with code {code}")
