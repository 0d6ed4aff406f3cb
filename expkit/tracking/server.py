"""One MLflow store for a team: the shared-store guard for cluster launchers, and `expkit server`.

Imports nothing heavy: the guard runs in the launching process before any job starts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from expkit.errors import ExpkitError
from expkit.tracking.store import is_local_store, tracking_uri

# Launchers whose jobs run on the launching machine, where a SQLite or file store is shared by every job.
LOCAL_LAUNCHERS = ("BasicLauncher", "JoblibLauncher", "submitit_launcher.LocalLauncher")
SERVER_HINT = "start a team server with `expkit server` and pass tracking.uri=http://HOST:5000 (or set MLFLOW_TRACKING_URI to it)"


def launcher_is_remote(launcher: Any) -> bool:
    """True when the launcher may run jobs on other machines (SLURM, a Ray cluster given by address, any unknown launcher)."""
    target = str(OmegaConf.select(launcher, "_target_", default="") or "") if launcher is not None else ""
    if not target or any(target.endswith(name) for name in LOCAL_LAUNCHERS):
        return False
    if target.endswith("RayLauncher"):  # without an address it starts a local Ray instance on this machine
        address = OmegaConf.select(launcher, "ray.init.address", default=None)
        return address not in (None, "", "local")
    return True


def check_shared_store(config: DictConfig) -> None:
    """Refuse a local (SQLite or file) store when jobs may run on other machines: each would write to its own disk."""
    if not OmegaConf.select(config, "tracking.enabled", default=False):
        return
    if OmegaConf.select(config, "tracking.allow_local_store_on_cluster", default=False):
        return
    launcher = OmegaConf.select(config, "hydra.launcher", default=None)
    if not launcher_is_remote(launcher):
        return
    uri = tracking_uri(OmegaConf.select(config, "tracking.uri", default=None), str(OmegaConf.select(config, "paths.root_dir")))
    if is_local_store(uri):
        name = str(OmegaConf.select(launcher, "_target_")).rsplit(".", 1)[-1]
        raise ExpkitError(
            f"{uri} is a local store, but {name} may run jobs on other machines, which would each write runs to their own disk",
            key="tracking.uri",
            hint=SERVER_HINT + "; a cluster with a shared file system may set tracking.allow_local_store_on_cluster=true",
        )


class SharedStoreCheck(Callback):
    """Runs check_shared_store before a multirun launches any job. Hydra turns callback exceptions into warnings, so exit here."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_shared_store(config)
        except ExpkitError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)


def server_command(backend_uri: str, artifacts_dir: Path, host: str, port: int, workers: int = 1) -> list[str]:
    """`mlflow server` with proxied artifacts: clients upload plots and models through HTTP, no shared file system needed."""
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend_uri,
        "--serve-artifacts", "--artifacts-destination", str(artifacts_dir),
        "--host", host, "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip


def client_uri(host: str, port: int) -> str:
    """The tracking URI clients use for a server bound to host:port."""
    if host in ("0.0.0.0", "::", ""):
        import socket

        host = socket.getfqdn()
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(*, root: Path, backend_uri: str | None, host: str, port: int, workers: int) -> None:
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
    print("  it takes a few seconds to start; Ctrl+C stops it", flush=True)
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    command = server_command(backend, artifacts, host, port, workers)
    sys.stderr.flush()
    if os.name == "posix":
        os.execv(sys.executable, command)
    import subprocess

    code = subprocess.call(command)
    if code:
        raise ExpkitError(f"the MLflow server exited with code {code}")
