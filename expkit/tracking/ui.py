"""Helpers of the MLflow UI server: whether a port is taken, and the `mlflow server` command line for a store."""

from __future__ import annotations

import socket
import sys

from expkit.tracking.query import local_store_path


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on host:port (so the server could not bind it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def ui_command(uri: str, host: str, port: int) -> list[str]:
    """The `mlflow server` command line for the store `uri`."""
    command = [sys.executable, "-m", "expkit.tracking.quiet_server", "server", "--backend-store-uri", uri, "--registry-store-uri", uri]
    # No line per HTTP request, no uvicorn start-up INFO lines (expkit ui prints where to open it); warnings and errors still show.
    command += ["--host", host, "--port", str(port), "--workers", "1", "--uvicorn-opts", "--log-level warning --no-access-log"]
    path = local_store_path(uri)
    if path is not None and path.is_file():
        # Experiments expkit created point at file://<root>/mlartifacts; the server reads those directly.
        # Experiments created in the UI get proxied artifacts in the same folder.
        command += ["--artifacts-destination", str(path.parent / "mlartifacts")]
    return command
