"""Beyond one machine: the shared-store guard, `expkit server`, and sweeps through the Ray and submitit launchers.

The launcher tests need the extras (`pip install "expkit[ray]"`, `"expkit[slurm]"`) and skip cleanly without them.
Every address stays on 127.0.0.1; Ray usage stats and MLflow telemetry are off, so nothing leaves this machine.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from expkit.cluster import check_data_on_worker, check_shared_store, launcher_is_remote
from expkit.errors import ExpkitError
from expkit.tracking.server import client_uri, server_command
from tests import mlflow_server as ms
from tests.conftest import REPO, expkit_env, mlflow_runs, output_dirs, read_metrics, run_expkit, run_inprocess

NO_TRAFFIC = {"RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
RAY = "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
SUBMITIT_LOCAL = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


def plugin_missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True


def sweep_config(launcher: dict, uri: str | None = None, **tracking: object) -> OmegaConf:
    return OmegaConf.create(
        {"paths": {"root_dir": "/tmp/x"}, "tracking": {"enabled": True, "uri": uri, **tracking}, "hydra": {"launcher": launcher}}
    )


@pytest.mark.parametrize(
    ("launcher", "remote"),
    [
        ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, False),
        ({"_target_": JOBLIB}, False),
        ({"_target_": SUBMITIT_LOCAL}, False),
        ({"_target_": RAY, "ray": {"init": {"address": None}}}, False),
        ({"_target_": RAY, "ray": {"init": {"address": "10.1.2.3:6379"}}}, True),
        ({"_target_": SLURM}, True),
        ({"_target_": "my_company.launchers.KubernetesLauncher"}, True),
    ],
)
def test_which_launchers_count_as_remote(launcher: dict, remote: bool) -> None:
    assert launcher_is_remote(OmegaConf.create(launcher)) is remote


def test_guard_refuses_a_local_store_only_for_remote_launchers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for uri in (None, "sqlite:///team.db", "file:///tmp/mlruns", "./mlruns"):
        with pytest.raises(ExpkitError, match="local store") as raised:
            check_shared_store(sweep_config({"_target_": SLURM}, uri))
        assert raised.value.key == "tracking.uri"
    check_shared_store(sweep_config({"_target_": SLURM}, "http://10.0.0.5:5000"))
    check_shared_store(sweep_config({"_target_": JOBLIB}, "sqlite:///team.db"))
    check_shared_store(sweep_config({"_target_": SLURM}, "sqlite:///team.db", allow_local_store_on_cluster=True))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://10.0.0.5:5000")
    check_shared_store(sweep_config({"_target_": SLURM}))


@pytest.mark.filterwarnings("ignore::UserWarning")  # expkit's ray.yaml replaces the plugin's config of the same name, on purpose
def test_ray_launcher_config_hides_the_cluster_traps() -> None:
    """expkit's hydra/launcher=ray: no object store size next to an address, resources from trainer.cpus/gpus, parent run id to workers."""
    from hydra import compose, initialize_config_dir

    from expkit.config.locate import conf_dir

    overrides = ["hydra/launcher=ray", "hydra.launcher.ray.init.address=127.0.0.1:6379", "trainer.cpus=3", "trainer.gpus=1"]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    ray = cfg.hydra.launcher.ray
    assert cfg.hydra.launcher._target_ == RAY
    assert "object_store_memory" in ray.init and ray.init.object_store_memory is None
    assert (ray.remote.num_cpus, ray.remote.num_gpus) == (3, 1)
    credentials = {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}  # a server with --auth (tests/test_team_server.py)
    assert set(ray.init.runtime_env.env_vars) == {"EXPKIT_SWEEP", "MLFLOW_TRACKING_URI", *credentials}


def test_missing_dataset_on_a_worker_names_the_host(tmp_path: Path) -> None:
    import platform

    config = OmegaConf.create({"dataset": {"path": str(tmp_path / "mnist.npz")}, "paths": {"data_dir": None}})
    with pytest.raises(ExpkitError, match=f"does not exist on host {platform.node()}") as raised:
        check_data_on_worker(config)
    assert raised.value.key == "dataset.path"
    (tmp_path / "mnist.npz").write_bytes(b"")
    check_data_on_worker(config)


def test_cluster_sweep_with_sqlite_store_exits_2_before_any_job(workdir: Path) -> None:
    """Acceptance 5: no job starts, no store or parent run is created; the message names tracking.uri and the fix."""
    result = run_inprocess("train", "-m", "hydra/launcher=ray", "hydra.launcher.ray.init.address=10.255.0.1:6379", "seed=1,2", cwd=workdir)
    assert result.returncode == 2, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "tracking.uri" in error_lines[0], result.stderr
    assert "expkit server" in result.stderr and "Traceback" not in result.stderr
    assert not (workdir / "mlflow.db").exists() and not list(workdir.rglob("config.yaml"))


def test_server_command_proxies_artifacts_and_binds_loopback() -> None:
    command = server_command("sqlite:////srv/mlflow.db", Path("/srv/mlartifacts"), "127.0.0.1", 5001)
    assert command[:4] == [sys.executable, "-m", "mlflow", "server"]
    assert "--serve-artifacts" in command and command[command.index("--artifacts-destination") + 1] == "/srv/mlartifacts"
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert client_uri("127.0.0.1", 5001) == "http://127.0.0.1:5001"
    assert client_uri("::1", 5001) == "http://[::1]:5001"
    assert client_uri("0.0.0.0", 5001) == "http://127.0.0.1:5001"
    command = server_command("sqlite:////x.db", Path("/a"), "0.0.0.0", 5001, allowed_hosts="team:5001")
    assert command[-2:] == ["--allowed-hosts", "team:5001"]


def test_server_refuses_a_busy_port(workdir: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_expkit("server", "--port", str(port), "--root", str(workdir), cwd=workdir, timeout=60)
    assert result.returncode == 2 and "already in use" in result.stderr, result.stderr


# --- sweeps through cluster launchers, logging through one `expkit server` ------------------------------------


@pytest.fixture(scope="module")
def team_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`expkit server` on a free loopback port: (tracking URI, server root)."""
    root = tmp_path_factory.mktemp("team-server")
    port = ms.free_port()
    command = [sys.executable, "-m", "expkit.cli", "server", "--root", str(root), "--port", str(port)]
    server = ms.start_process(command, url=f"http://127.0.0.1:{port}", log=root / "server.log", cwd=root, env=expkit_env(**NO_TRAFFIC))
    try:
        ms.wait_healthy(server, timeout=120)
        assert f"http://127.0.0.1:{port}" in server.output()  # it printed the URI to use
        yield server.url, root
    finally:
        ms.stop(server)


def sweep_through(launcher_args: list[str], experiment: str, uri: str, workdir: Path, shared_data: Path) -> None:
    args = [
        "train", "-m", "+experiment=mnist_dense", "trainer.epochs=1", "optimizer.learning_rate=1e-3,1e-4",
        f"dataset.path={shared_data / 'mnist.npz'}", "dataset.max_train_samples=1000", "dataset.max_test_samples=300",
        "dataset.validation.holdout=200",  # a sweep chooses on validation data
        "trainer.verbose=0", f"tracking.uri={uri}", f"tracking.experiment_name={experiment}", *launcher_args,
    ]  # fmt: skip
    result = run_expkit(*args, cwd=workdir, timeout=600, **NO_TRAFFIC)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]


def skip_if_ray_could_not_start(output: str) -> None:
    """Ray's own start-up failing (no raylet, say, in a restricted container) is an environment limit, not a bug."""
    text = output.lower()
    if "ray" in text and ("failed to start" in text or "raylet" in text):
        pytest.skip(f"Ray could not start here: {output[-300:]}")


def assert_run_tree(uri: str, server_root: Path, experiment: str) -> None:
    """One parent, two FINISHED children with plots and a model, all stored by the server (none on the client's disk)."""
    runs = ms.search_runs(uri, experiment)
    tags = {run["info"]["run_id"]: ms.as_dict(run["data"].get("tags")) for run in runs}
    parents = [rid for rid, t in tags.items() if t.get("expkit.sweep") == "parent"]
    assert len(parents) == 1, tags
    children = [run for run in runs if tags[run["info"]["run_id"]].get("mlflow.parentRunId") == parents[0]]
    statuses = {run["info"]["run_name"]: (run["info"]["status"], tags[run["info"]["run_id"]].get("failure")) for run in children}
    assert len(children) == 2 and all(status == "FINISHED" for status, _ in statuses.values()), statuses
    for child in children:
        run_id = child["info"]["run_id"]
        assert child["info"]["artifact_uri"].startswith("mlflow-artifacts:"), child["info"]  # proxied through the server
        listed = ms.rest(uri, "api/2.0/mlflow/artifacts/list", params={"run_id": run_id, "path": "plots"})
        assert {"plots/loss.png", "plots/accuracy.png"} <= {f["path"] for f in listed.get("files", [])}
        model_id = tags[run_id]["model_uri"].removeprefix("models:/")
        assert list(server_root.glob(f"mlartifacts/*/models/{model_id}/artifacts/MLmodel")), f"model {model_id} not stored by the server"


@pytest.mark.slow
@pytest.mark.skipif(plugin_missing("hydra_plugins.hydra_ray_launcher"), reason='Ray launcher not installed (pip install "expkit[ray]")')
def test_ray_sweep_logs_one_run_tree_through_the_server(team_server: tuple[str, Path], workdir: Path, shared_data: Path) -> None:
    """Acceptance 1: a local Ray instance (2 CPUs, started by the launcher, on 127.0.0.1) runs both jobs."""
    uri, root = team_server
    ray_args = ["hydra/launcher=ray", "hydra.launcher.ray.init.num_cpus=2", "+hydra.launcher.ray.init._node_ip_address=127.0.0.1"]
    try:
        sweep_through(ray_args, "cluster_ray", uri, workdir, shared_data)
    except AssertionError as failure:
        skip_if_ray_could_not_start(str(failure))
        raise
    assert_run_tree(uri, root, "cluster_ray")


@pytest.mark.slow
@pytest.mark.skipif(plugin_missing("hydra_plugins.hydra_ray_launcher"), reason='Ray launcher not installed (pip install "expkit[ray]")')
def test_optuna_search_on_two_ray_workers_shares_one_rdb_study(team_server: tuple[str, Path], workdir: Path, shared_data: Path) -> None:
    """Acceptance 3: the Optuna sweeper asks 2 trials per batch, Ray runs them on two workers at once, and every
    worker reports to one RDB study (SQLite here; postgresql:// on a cluster): 4 trials, numbers 0-3, none twice."""
    import optuna

    uri, _ = team_server
    study_db = workdir / "study.db"
    args = [
        "train", "-m", "+experiment=mnist_dense", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
        f"hydra.sweeper.storage=sqlite:///{study_db}", "hydra.sweeper.study_name=ray_shared", "hydra.sweeper.seed=0",
        "hydra.sweeper.pruner=median", "trainer.epochs=2", "optimizer.learning_rate=tag(log, interval(1e-4, 1e-2))",
        f"dataset.path={shared_data / 'mnist.npz'}", "dataset.max_train_samples=1000", "dataset.max_test_samples=300",
        "dataset.validation.holdout=200", "trainer.verbose=0", "tracking.log_model=false", f"tracking.uri={uri}",
        "tracking.experiment_name=cluster_optuna", "hydra/launcher=ray", "hydra.launcher.ray.init.num_cpus=2",
        "+hydra.launcher.ray.init._node_ip_address=127.0.0.1",
    ]  # fmt: skip
    result = run_expkit(*args, cwd=workdir, timeout=900, **NO_TRAFFIC)
    if result.returncode != 0:
        skip_if_ray_could_not_start(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    study = optuna.load_study(study_name="ray_shared", storage=f"sqlite:///{study_db}")
    numbers = sorted(t.number for t in study.trials)
    assert numbers == [0, 1, 2, 3], [(t.number, t.state) for t in study.trials]
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    # Each job reported its per-epoch objective to the shared study from its Ray worker (the pruner reads these).
    assert all(t.intermediate_values for t in study.trials), [t.intermediate_values for t in study.trials]
    runs = ms.search_runs(uri, "cluster_optuna")
    tags = [ms.as_dict(run["data"].get("tags")) for run in runs]
    children = [t for t in tags if "mlflow.parentRunId" in t]
    assert sorted(int(t["optuna.trial"]) for t in children) == [0, 1, 2, 3] and len({t["mlflow.parentRunId"] for t in children}) == 1
    # The two jobs of a batch ran at the same time, in two Ray worker processes.
    workers = {line.split(" pid=")[1].split(")")[0] for line in result.stdout.splitlines() + result.stderr.splitlines() if " pid=" in line}
    assert len(workers) >= 2, result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(
    plugin_missing("hydra_plugins.hydra_submitit_launcher"), reason='submitit launcher not installed (pip install "expkit[slurm]")'
)
def test_submitit_local_sweep_gives_the_same_run_tree(team_server: tuple[str, Path], workdir: Path, shared_data: Path) -> None:
    """Acceptance 2: the same sweep through submitit's local executor (the SLURM launcher's code path, without SLURM)."""
    uri, root = team_server
    sweep_through(["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"], "cluster_submitit", uri, workdir, shared_data)
    assert_run_tree(uri, root, "cluster_submitit")


# --- tf.distribute ------------------------------------------------------------------------------------------------

MIRRORED = ("trainer.strategy=mirrored", "trainer.cpu_devices=2")


def test_multi_worker_mirrored_is_refused_before_tensorflow_starts(workdir: Path) -> None:
    """The message; that no TensorFlow is imported first is checked in a real process with test_cli.py's LIGHT_COMMANDS."""
    result = run_inprocess("validate", "trainer.strategy=multi_worker_mirrored", cwd=workdir)
    assert result.returncode == 2 and "trainer.strategy" in result.stderr and "mirrored" in result.stderr, result.stderr


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_reaches_the_default_accuracy(workdir: Path, shared_data: Path) -> None:
    """Acceptance 4 (first half), on 6 000 MNIST samples: two replicas, one global batch, the same accuracy within noise."""
    common = ["+experiment=mnist_dense", "trainer.epochs=1", f"dataset.path={shared_data / 'mnist.npz'}", "dataset.max_train_samples=6000"]
    accuracy = {}
    for strategy in ("default", "mirrored"):
        extra = MIRRORED if strategy == "mirrored" else ()
        (workdir / strategy).mkdir()
        result = run_expkit("train", *common, *extra, "tracking=none", "trainer.verbose=0", cwd=workdir / strategy, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        accuracy[strategy] = float(next(line for line in result.stdout.splitlines() if line.startswith("test_accuracy:")).split()[1])
        if strategy == "mirrored":
            assert "MirroredStrategy: 2 replicas, global batch 128" in result.stderr, result.stderr[-3000:]
    assert accuracy["default"] > 0.85 and abs(accuracy["mirrored"] - accuracy["default"]) < 0.02, accuracy


@pytest.mark.slow
def test_mirrored_run_resumes_after_kill_9(workdir: Path) -> None:
    """Checkpoints and resume under a strategy: the resumed run restores mirrored weights and optimizer state."""
    from tests.test_reliability import FAST, crash_callback

    crashed = run_expkit("train", "trainer.epochs=3", *MIRRORED, crash_callback(workdir, 2, 9), *FAST, cwd=workdir, PYTHONPATH=str(REPO))
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    resumed = run_expkit("resume", "latest", cwd=workdir, PYTHONPATH=str(REPO))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "after epoch 2" in resumed.stderr and "MirroredStrategy: 2 replicas" in resumed.stderr
    (run,) = mlflow_runs(workdir, "digits_mlp")
    assert run.info.status == "FINISHED"
    (run_dir,) = output_dirs(workdir)
    assert read_metrics(run_dir)["epochs_run"] == 3
