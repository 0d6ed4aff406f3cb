"""Start and stop real `mlflow server` processes for tests, and talk to their REST API. Plain functions, no pytest."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expkit.tracking.new_store import seed_new_store

# The server's job runner (GenAI evaluation jobs) is not needed here; without it the server starts
# faster and leaves no `huey_consumer` processes behind after SIGTERM.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A server running in its own process group, with its output in `log`."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self, tail: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-tail:] if self.log.exists() else ""


def start_process(command: list[str], *, url: str, log: Path, cwd: Path, env: dict[str, str], nice: int = 0) -> ServerProcess:
    """Start `command` in a new session (so stop() can end it with all its children); output goes to `log`.

    nice > 0 lowers its CPU priority (POSIX `nice`), for a server started early that is needed only later.
    """
    if nice and shutil.which("nice"):
        command = ["nice", "-n", str(nice), *command]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return ServerProcess(process, url, log)


def start_mlflow_server(
    backend_uri: str,
    artifacts_dir: Path,
    *,
    cwd: Path,
    env: dict[str, str],
    host: str = "127.0.0.1",
    port: int | None = None,
    nice: int = 0,
) -> ServerProcess:
    """`mlflow server` on `backend_uri`, proxying artifacts to `artifacts_dir` (not yet waited for)."""
    port = port or free_port(host)
    seed_new_store(backend_uri)  # a new SQLite store as expkit makes one: MLflow's schema, copied (no effect on others)
    command = [
        sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri, "--host", host, "--port", str(port),
        "--workers", "1", "--serve-artifacts", "--artifacts-destination", str(artifacts_dir),
    ]  # fmt: skip
    log = cwd / f"mlflow-server-{port}.log"
    return start_process(command, url=f"http://{host}:{port}", log=log, cwd=cwd, env={**env, **SERVER_ENV}, nice=nice)


def wait_ping(server: ServerProcess, timeout: float = 180) -> None:
    """Poll `mlflow models serve`'s GET /ping until it answers; fail with the server's output if it exits or times out."""
    deadline = time.monotonic() + timeout
    while True:
        assert server.process.poll() is None, server.output()
        assert time.monotonic() < deadline, f"mlflow models serve did not answer /ping in {timeout:.0f} s:\n" + server.output()
        try:
            with urllib.request.urlopen(f"{server.url}/ping", timeout=2):
                return
        except OSError:
            time.sleep(1)


def wait_healthy(server: ServerProcess, timeout: float = 90) -> None:
    """Poll GET /health until it answers 200; fail early, with the server's output, if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with code {server.process.returncode}:\n{server.output()}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{server.url}/health", timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(f"{server.url}/health did not answer within {timeout:.0f} s:\n{server.output()}")


def stop(server: ServerProcess, timeout: float = 20) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left."""
    if server.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(timeout)
    # Children (uvicorn workers) may outlive the main process: end the whole group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(server.process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.process.wait(5)


def rest(base_url: str, path: str, payload: dict[str, Any] | None = None, *, params: dict[str, str] | None = None) -> Any:
    """GET (or POST `payload` as JSON to) base_url/path and decode the JSON answer."""
    url = f"{base_url}/{path.lstrip('/')}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="GET" if data is None else "POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def fetch_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode(errors="replace")


def search_runs(base_url: str, experiment_name: str, prefix: str = "api/2.0") -> list[dict[str, Any]]:
    """All runs of `experiment_name` through the REST API, as JSON dicts (info, data)."""
    found = rest(base_url, f"{prefix}/mlflow/experiments/get-by-name", params={"experiment_name": experiment_name})
    experiment_id = found["experiment"]["experiment_id"]
    return rest(base_url, f"{prefix}/mlflow/runs/search", {"experiment_ids": [experiment_id], "max_results": 1000}).get("runs", [])


def as_dict(items: list[dict[str, Any]] | None, value: str = "value") -> dict[str, Any]:
    """[{'key': k, 'value': v}, ...] (the REST form of params, metrics, tags) -> {k: v}."""
    return {item["key"]: item[value] for item in items or []}
