"""Shared fixtures: run the real `expkit` command in a clean folder and read what it recorded, or compose a config in-process."""

from __future__ import annotations

import json
import os
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EXPKIT_SHARED_DATA", REPO.parent / "shared" / "datasets"))
# On CI (CI=true, as GitHub Actions and most CI services set it) a missing shared dataset is an error, not a skip.
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def offline_env(proxy: str = "http://127.0.0.1:9") -> dict[str, str]:
    """Environment variables that send every urllib download (so `keras.datasets`' download) to `proxy`, whether or
    not the machine has network access. With nothing listening there (port 9 by default), the download fails at once."""
    names = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
    return {**dict.fromkeys(names, proxy), "no_proxy": "", "NO_PROXY": ""}


@dataclass
class BlockedDownloads:
    """A local proxy that refuses every request (403) and remembers them; `env` points downloads at it."""

    env: dict[str, str]
    requests: list[str]


@pytest.fixture
def blocked_downloads() -> Iterator[BlockedDownloads]:
    """Downloads fail on purpose, the same way with or without network; `requests` proves one was attempted."""
    seen: list[str] = []

    class Refuse(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            seen.append(self.rfile.readline(2000).decode(errors="replace").strip())
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Refuse) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield BlockedDownloads(offline_env(f"http://127.0.0.1:{server.server_address[1]}"), seen)
        finally:
            server.shutdown()


def expkit_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "EXPKIT_", "HYDRA_"))}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run_expkit(*args: str, cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m expkit.cli ARGS` in `cwd` (the same entry point as the `expkit` script)."""
    return subprocess.run(
        [sys.executable, "-m", "expkit.cli", *args], cwd=cwd, env=expkit_env(**env), capture_output=True, text=True, timeout=timeout
    )


def assert_clean_error(done, *needles: str) -> None:  # type: ignore[no-untyped-def]
    """A bad-input failure: exit 2, no traceback, exactly one `error:` line, naming each of `needles`."""
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr


def output_dirs(root: Path) -> list[Path]:
    """Every run folder (one holding metrics.json or run_id) below root/outputs."""
    return sorted({p.parent for p in (root / "outputs").rglob("config.yaml") if p.parent.name != ".hydra"})


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty folder to run expkit from."""
    return tmp_path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets folder (../shared/datasets): skipped when missing locally, an error on CI."""
    missing = [name for name in ("mnist.npz", "boston_housing.npz") if not (SHARED_DATA / name).is_file()]
    if missing:
        message = f"real datasets {', '.join(missing)} not found in {SHARED_DATA} (set EXPKIT_SHARED_DATA)"
        if IN_CI:
            pytest.fail(message + "; on CI (CI=true) the shared data must be present", pytrace=False)
        pytest.skip(message)
    return SHARED_DATA


def compose(*overrides: str, root: Path) -> Any:
    """The validated ExperimentConfig `expkit train OVERRIDES` would run, composed in-process (paths under `root`)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    from expkit.config import validate_config
    from expkit.config.locate import conf_dir
    from expkit.config.resolvers import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = hydra_compose("config", overrides=[*overrides, f"paths.root_dir={root}", f"paths.output_dir={root}/run"])
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return validate_config(cfg)


def mlflow_runs(root: Path, experiment: str) -> list:
    """All runs of `experiment` in root/mlflow.db."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r} in {root / 'mlflow.db'}"
    return client.search_runs([exp.experiment_id])
