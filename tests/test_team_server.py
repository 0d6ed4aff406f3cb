"""`expkit server --auth` (MLflow's basic-auth app) on SQLite and on PostgreSQL: 401/403, a sweep by an EDIT user with its
Optuna study in an RDB on the same database server, no password anywhere it could leak; and the non-loopback bind guard."""

from __future__ import annotations

import base64
import glob
import json
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import mlflow_server as ms
from tests import postgres
from tests.conftest import expkit_env, run_expkit, run_inprocess

ADMIN_PW = "admin-" + secrets.token_hex(8)
EDITOR_PW = "editor-" + secrets.token_hex(8)
READER_PW = "reader-" + secrets.token_hex(8)
DB_PW = "database-" + secrets.token_hex(8)  # in the PostgreSQL URI (the test cluster trusts 127.0.0.1, so any password works)
SECRETS = (ADMIN_PW, EDITOR_PW, READER_PW, DB_PW)
NO_TRAFFIC = {"RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
FAST = ("trainer.verbose=0", "tracking.log_model=false", "tracking.tensorboard.enabled=false", "dataset.max_train_samples=300")


def call(url: str, path: str, payload: dict[str, Any] | None = None, auth: tuple[str, str] | None = None) -> tuple[int, Any]:
    """(HTTP status, decoded JSON) of GET (or POST payload to) url/path, with basic auth if given."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(f"{url}/{path}", data=data, method="GET" if data is None else "POST")
    request.add_header("Content-Type", "application/json")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


@dataclass
class AuthServer:
    url: str
    root: Path
    store: str
    log: Path


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def auth_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """`expkit server --auth` on 127.0.0.1 over a new store of each kind; the admin password only in its environment."""
    root = tmp_path_factory.mktemp(f"auth-{request.param}")
    store = postgres.store_uri(request.param, root).replace("://expkit@", f"://expkit:{DB_PW}@")
    port = ms.free_port()
    command = [sys.executable, "-m", "expkit.cli", "server", "--auth", "--root", str(root), "--port", str(port)]
    command += ["--backend-store-uri", store]
    env = expkit_env(MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN_PW, **NO_TRAFFIC)
    server = ms.start_process(command, url=f"http://127.0.0.1:{port}", log=root / "server.log", cwd=root, env=env)
    try:
        ms.wait_healthy(server, timeout=180)
        processes = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True, timeout=30).stdout
        assert "basic-auth" in processes and not [pw for pw in SECRETS if pw in processes]  # no password in the process list
        yield AuthServer(server.url, root, store, server.log)
    finally:
        ms.stop(server)


def as_user(name: str, password: str, **extra: str) -> dict[str, str]:
    return {"MLFLOW_TRACKING_USERNAME": name, "MLFLOW_TRACKING_PASSWORD": password, **extra}


def store_dump(store: str, root: Path) -> bytes:
    """The whole runs store as bytes: the SQLite file, or pg_dump of the PostgreSQL database."""
    if store.startswith("sqlite:///"):
        return Path(store.removeprefix("sqlite:///")).read_bytes()
    pg_dump = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"))[-1]
    return subprocess.run([pg_dump, "--dbname", store], capture_output=True, check=True, timeout=120).stdout


def files_holding(folder: Path, needles: tuple[str, ...]) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {i}" for i, needle in enumerate(needles) if needle.encode() in data]
    return found


@pytest.mark.slow
def test_auth_401_403_an_editors_sweep_and_no_password_anywhere(auth_server: AuthServer, workdir: Path) -> None:
    url = auth_server.url
    # Unauthenticated: 401. The admin (password from the server's environment only) is let in.
    status, _ = call(url, "api/2.0/mlflow/experiments/search", {"max_results": 10})
    assert status == 401
    assert call(url, "api/2.0/mlflow/experiments/search", {"max_results": 10}, ("admin", ADMIN_PW))[0] == 200

    # Users and grants through `expkit server user`, as the admin; passwords come from files.
    outputs: list[str] = []
    admin = as_user("admin", ADMIN_PW, MLFLOW_TRACKING_URI=url)
    for name, password in (("editor", EDITOR_PW), ("reader", READER_PW)):
        secret = workdir.parent / f"{name}.pw"
        secret.write_text(password + "\n")
        done = run_inprocess("server", "user", "add", name, "--password-file", str(secret), cwd=workdir, **admin)  # a client of the server
        assert done.returncode == 0, done.stderr
        outputs += [done.stdout, done.stderr]
        secret.unlink()
    done = run_inprocess("server", "user", "grant", "editor", "team", "EDIT", cwd=workdir, **admin)
    assert done.returncode == 0 and "EDIT on experiment team" in done.stdout, done.stderr
    outputs += [done.stdout, done.stderr]
    experiment_id = done.stdout.strip().rsplit("(", 1)[1].rstrip(")")

    # READ (the default permission): can list runs, cannot create one.
    status, listed = call(url, "api/2.0/mlflow/runs/search", {"experiment_ids": [experiment_id]}, ("reader", READER_PW))
    assert status == 200, listed
    status, refused = call(url, "api/2.0/mlflow/runs/create", {"experiment_id": experiment_id}, ("reader", READER_PW))
    assert status == 403, refused

    # EDIT: a 2-job joblib sweep, its Optuna study in an RDB beside the store (same SQLite folder / same PostgreSQL server).
    study = postgres.store_uri("sqlite" if auth_server.store.startswith("sqlite") else "postgresql", workdir, "optuna")
    sweep = run_expkit(
        "train", "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", "hydra.sweeper.seed=0",
        f"hydra.sweeper.storage={study}", "hydra.sweeper.study_name=team", "optimizer.learning_rate=interval(0.005, 0.05)",
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.epochs=2", *FAST,
        f"tracking.uri={url}", "tracking.experiment_name=team",
        cwd=workdir, timeout=900, **as_user("editor", EDITOR_PW, **NO_TRAFFIC),
    )  # fmt: skip
    outputs += [sweep.stdout, sweep.stderr]
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-5000:]
    status, found = call(url, "api/2.0/mlflow/runs/search", {"experiment_ids": [experiment_id]}, ("reader", READER_PW))
    children = [r for r in found["runs"] if any(t["key"] == "mlflow.parentRunId" for t in r["data"].get("tags", []))]
    assert len(children) == 2 and all(r["info"]["status"] == "FINISHED" for r in children), found
    for child in children:
        steps = [m for m in child["data"]["metrics"] if m["key"] == "val_loss"]
        assert steps and steps[0]["step"] == 1  # both epochs; the last one is step 1
        assert child["data"]["tags"] and child["info"]["artifact_uri"].startswith("mlflow-artifacts:")
        status, listed = call(url, f"api/2.0/mlflow/artifacts/list?run_id={child['info']['run_id']}&path=plots", auth=("reader", READER_PW))
        assert status == 200 and any(f["path"] == "plots/loss.png" for f in listed.get("files", [])), listed
    import optuna

    trials = optuna.load_study(study_name="team", storage=study).get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == [0, 1] and all(t.state.name == "COMPLETE" for t in trials)

    # No password anywhere: the store, the server's folder (artifacts, user store, config), the run folders, every output.
    assert not [i for i, pw in enumerate(SECRETS) if pw.encode() in store_dump(auth_server.store, auth_server.root)]
    assert not files_holding(auth_server.root, SECRETS)
    assert not files_holding(workdir, SECRETS)
    assert list(workdir.rglob(".hydra/hydra.yaml"))  # the Hydra folders were searched
    assert not [i for i, pw in enumerate(SECRETS) if any(pw in text for text in outputs)]
    assert (auth_server.root / "basic_auth.ini").is_file()
    assert not [pw for pw in SECRETS if pw in auth_server.log.read_text(errors="replace")]  # the server's own output


# --- the guards, checked before anything binds -----------------------------------------------------------------


def test_non_loopback_without_auth_exits_2_with_the_reason(workdir: Path) -> None:
    done = run_expkit("server", "--host", "0.0.0.0", "--port", str(ms.free_port()), "--root", str(workdir), cwd=workdir, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "without authentication" in done.stderr and "--auth" in done.stderr and "--insecure" in done.stderr


@pytest.mark.parametrize(
    "password", ["", pytest.param("password1234", marks=pytest.mark.slow), pytest.param("tiny-pw", marks=pytest.mark.slow)]
)
def test_auth_without_a_real_admin_password_exits_2(workdir: Path, password: str) -> None:
    done = run_expkit("server", "--auth", "--port", str(ms.free_port()), "--root", str(workdir), cwd=workdir, timeout=60,
                      MLFLOW_AUTH_ADMIN_PASSWORD=password)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" in done.stderr
    assert not password or password not in done.stdout + done.stderr.replace("password1234", "")


@pytest.mark.slow
def test_a_user_store_whose_admin_kept_the_old_default_does_not_start(workdir: Path) -> None:
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(f"sqlite:///{workdir / 'basic_auth.db'}")
    store.create_user("admin", "password1234", is_admin=True)
    store.engine.dispose()
    done = run_expkit("server", "--auth", "--admin", "boss", "--port", str(ms.free_port()), "--root", str(workdir), cwd=workdir,
                      timeout=60, MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN_PW)  # fmt: skip
    assert done.returncode == 2 and "old default password" in done.stderr and "does not start" in done.stderr, done.stderr


@pytest.mark.slow
def test_insecure_serves_a_non_loopback_address_with_a_warning(workdir: Path) -> None:
    # 0.0.0.0 is a non-loopback bind (every interface); the test reaches it through 127.0.0.1 only, so no traffic
    # leaves the loopback range.
    port = ms.free_port("0.0.0.0")
    command = [sys.executable, "-m", "expkit.cli", "server", "--host", "0.0.0.0", "--insecure", "--port", str(port), "--root", str(workdir)]
    env = expkit_env(**NO_TRAFFIC)
    server = ms.start_process(command, url=f"http://127.0.0.1:{port}", log=workdir / "server.log", cwd=workdir, env=env)
    try:
        ms.wait_healthy(server, timeout=180)
        assert "WARNING: --insecure" in server.output() and "no authentication" in server.output()
    finally:
        ms.stop(server)


@pytest.mark.filterwarnings("ignore::UserWarning")  # expkit's ray.yaml replaces the plugin's config of the same name, on purpose
def test_ray_workers_get_the_credentials_from_the_environment_not_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from expkit.config.locate import conf_dir

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "editor")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", EDITOR_PW)
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=ray"], return_hydra_config=True)
    init = cfg.hydra.launcher.ray.init
    # What the launcher hands to ray.init (resolved): the workers' environment carries the credentials ...
    assert OmegaConf.to_container(init, resolve=True)["runtime_env"]["env_vars"]["MLFLOW_TRACKING_PASSWORD"] == EDITOR_PW
    # ... while what Hydra writes to .hydra/hydra.yaml (unresolved, as Hydra saves it) holds only the reference.
    saved = OmegaConf.to_yaml(cfg.hydra)
    assert EDITOR_PW not in saved and "${oc.env:MLFLOW_TRACKING_PASSWORD" in saved
