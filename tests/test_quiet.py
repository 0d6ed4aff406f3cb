"""Quiet, readable output (issue 27): no library chatter in piped output, sweep lines and summary, `expkit ui`, the
progress bar, k-fold numbering, and the params a run logs. Real subprocesses for the commands; the rest in-process."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest

from tests import mlflow_server as ms
from tests.conftest import expkit_env, mlflow_runs, output_dirs
from tests.fabricate import add_run, make_store

#: What TensorFlow, absl, MLflow and Hydra's root logger print when nobody quiets them.
NOISE = ("oneDNN", "InitializeLog", "cpu_feature_guard", "Creating initial MLflow database tables", "INFO mlflow", "[INFO]")
FAST = ("tracking.tensorboard.enabled=false",)


def cli(*args: str, cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m expkit.cli ARGS`, piped, in the environment a user has: TF_CPP_MIN_LOG_LEVEL not set."""
    environment = expkit_env(**env)
    environment.pop("TF_CPP_MIN_LOG_LEVEL", None)
    command = [sys.executable, "-m", "expkit.cli", *args]
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout)


def assert_quiet(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (done.stdout + done.stderr).splitlines()
    noisy = [line for line in lines if any(n in line for n in NOISE)]
    assert not noisy, noisy
    notes = [line for line in lines if line.startswith("note:")]
    assert len(notes) == len(set(notes)), notes
    assert not [n for n in notes if "architecture diagram" in n], notes


@pytest.mark.slow
def test_first_run_then_predict_evaluate_resume_and_validate_build_print_no_library_noise(workdir: Path) -> None:
    # A new store, on a machine where expkit has not cached MLflow's empty store yet (it builds it now, with MLflow's
    # migrations and their INFO lines), a new matplotlib cache (its "generated new fontManager" INFO line), TensorFlow's
    # own log level.
    cache = workdir / "cache"
    train = cli("train", "trainer.epochs=1", *FAST, cwd=workdir, MPLCONFIGDIR=str(workdir / "mpl"), EXPKIT_CACHE_DIR=str(cache))
    assert_quiet(train)
    assert list(cache.glob("mlflow-*-empty.db")), "the new store was copied from an empty store built on first use"
    (run_dir,) = output_dirs(workdir)
    assert (run_dir / "model.png").stat().st_size > 1000  # drawn without pydot/Graphviz, instead of a note
    run_id = (run_dir / "run_id").read_text().strip()

    # Params: one per knob, only what applies to the digits source; the parameter count is a metric.
    (run,) = mlflow_runs(workdir, "digits_mlp")
    params = run.data.params
    assert params["model.units"] == "64" and params["optimizer.learning_rate"] == "0.001"
    assert not [k for k in params if k.startswith("model.layers.") and k.endswith(".units") and params[k] == "64"], params
    absent = ("dataset.color_mode", "dataset.on_bad_image", "dataset.augment", "dataset.augment_preview", "phases", "model.num_params")
    assert not [k for k in absent if k in params]
    assert not [k for k in params if k.startswith("sweep.")]
    assert run.data.metrics["model.num_params"] == 64 * 64 + 64 + 64 * 10 + 10

    from sklearn.datasets import load_digits

    np.save(workdir / "x.npy", load_digits().data[:5])
    for args in (
        ("predict", run_id, "--input", "x.npy", "--output", "p.csv"),
        ("evaluate", run_id, "--split", "validation"),
        ("resume", str(run_dir)),
        ("validate", "--build"),
    ):
        assert_quiet(cli(*args, cwd=workdir))
    assert len((workdir / "p.csv").read_text().splitlines()) == 6


def test_resume_calls_a_missing_path_a_folder_not_a_run_id(workdir: Path) -> None:
    done = cli("resume", str(workdir / "nope"), cwd=workdir)
    assert done.returncode == 2
    assert f"no such run folder: {workdir / 'nope'}" in done.stderr and "run id" not in done.stderr.splitlines()[0]


# ---------------------------------------------------------------- sweeps


@pytest.mark.slow
def test_joblib_sweep_lines_carry_their_job_and_the_summary_is_best_first(workdir: Path) -> None:
    # lr 1e-2 beats 1e-3 on the digits MLP after one epoch (val_loss 0.37 against 1.90 on seed 42): job 1 is the best.
    done = cli(
        "train", "-m", "optimizer.learning_rate=1e-3,1e-2", "trainer.epochs=1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
        "tracking.log_model=false", *FAST, cwd=workdir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert "Joblib.Parallel(" not in out
    mlflow_lines = [line for line in out.splitlines() if "MLflow run " in line and " in sqlite:" in line]
    labels = sorted(line.split("]")[0] for line in mlflow_lines)
    assert labels == ["[job 0: optimizer.learning_rate=0.001", "[job 1: optimizer.learning_rate=0.01"]
    summary = done.stdout[done.stdout.index("sweep summary:") :].splitlines()
    header = summary[1].split()
    assert "val_loss" not in header, "the objective is val_loss: one column, not two identical ones"
    rows = [line for line in summary[3:] if line.strip()]
    assert "lr=0.01 " in rows[0] and rows[0].startswith("* ") and "lr=0.001 " in rows[1]  # run names abbreviate the keys


def test_summary_is_best_first_cuts_names_between_words_and_shows_val_loss_once(tmp_path: Path) -> None:
    from expkit.selection.objective import Objective
    from expkit.tracking.sweep import summary_table

    store = make_store(tmp_path, "sweep")
    long = "holdout=1000 " + " ".join(f"knob{i}=value{i}" for i in range(12))
    runs = []
    for i, loss in enumerate((0.9, 0.2, 0.5)):
        metrics = {"objective": loss, "val_loss": loss, "test_loss": loss + 0.01}
        runs.append(add_run(store, name=f"lr={i} {long}", params={}, metrics=metrics, start_time=1_000 + i))
    add_run(store, name="lr=9 failed", params={}, metrics={}, status="FAILED", start_time=2_000)
    children = store.client.search_runs([store.experiment_id])
    table = summary_table(children, "parent", runs[1].info.run_id, Objective.create("val_loss"))
    lines = table.strip().splitlines()
    assert "val_loss" not in lines[1].replace("objective (val_loss)", "")
    rows = lines[3:]
    assert [r.split()[1 if r.startswith("*") else 0] for r in rows] == ["lr=1", "lr=2", "lr=0", "lr=9"]  # best first, failed last
    for row in rows[:3]:
        name = row[2:].split("  ")[0]
        words = name.split(" ")
        assert all(w in long.split(" ") or w in ("...", "lr=0", "lr=1", "lr=2") for w in words), name  # no word cut in two

    # A maximized objective ranks the other way.
    flipped = summary_table(children, "parent", None, Objective.create("val_accuracy", "max")).strip().splitlines()[3:]
    assert [r.split()[0] for r in flipped] == ["lr=0", "lr=2", "lr=1", "lr=9"]


def test_the_joblib_settings_line_is_dropped_and_the_job_lines_kept(caplog: pytest.LogCaptureFixture) -> None:
    from expkit.tracking.sweep import quiet_launcher_log

    quiet_launcher_log()
    log = logging.getLogger("hydra_plugins.hydra_joblib_launcher._core")
    with caplog.at_level(logging.INFO, logger=log.name):
        log.info("Joblib.Parallel(n_jobs=2,backend=loky) is launching 2 jobs")
        log.info("Launching jobs, sweep output dir : /x")
        log.info("\t#0 : seed=1")
    assert [r.getMessage() for r in caplog.records] == ["Launching jobs, sweep output dir : /x", "\t#0 : seed=1"]


# ---------------------------------------------------------------- expkit ui


@pytest.mark.slow
def test_ui_prints_no_request_lines_or_start_up_notices(tmp_path: Path) -> None:
    store = make_store(tmp_path, "digits_mlp")
    add_run(store, name="one", params={"seed": 1}, metrics={"objective": 0.5})
    port = ms.free_port()
    server = ms.start_process(
        [sys.executable, "-m", "expkit.cli", "ui", "--port", str(port)], url=f"http://127.0.0.1:{port}", log=tmp_path / "ui.log",
        cwd=tmp_path, env=expkit_env(),
    )  # fmt: skip
    try:
        ms.wait_healthy(server, timeout=120)
        for _ in range(3):
            ms.fetch_text(server.url + "/")
        assert ms.search_runs(server.url, "digits_mlp", prefix="ajax-api/2.0")
        time.sleep(1)
    finally:
        ms.stop(server)
    lines = [line for line in server.output(20_000).splitlines() if line.strip()]
    assert lines[0] == f"MLflow UI for {store.uri}"
    assert "digits_mlp (1 run): " in lines[2]
    assert len(lines) == 3, lines  # no request lines, no uvicorn INFO, no security or deprecation notices


# ---------------------------------------------------------------- progress bar


@pytest.mark.slow
def test_progress_bar_never_counts_past_the_epochs_batches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """36 batches with steps_per_execution=16: Keras reports batch 47 after the epoch's last call (it ran 4)."""
    import keras.src.callbacks.progbar_logger as progbar_logger
    from keras.utils import Progbar

    from expkit.training.runner import train_and_evaluate
    from tests.conftest import compose

    class EveryUpdate(Progbar):  # draws every update, as a slow epoch on a terminal does (Keras skips redraws < 50 ms apart)
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            self.interval = 0

    config = compose("trainer.epochs=2", "trainer.verbose=1", "tracking.enabled=false", root=tmp_path)
    from expkit.data import load_splits

    splits = load_splits(config.dataset, data_dir=None, seed=config.seed)
    assert -(-(len(splits.x_train)) // config.trainer.batch_size) == 36 and config.trainer.steps_per_execution == 16
    original = progbar_logger.Progbar
    progbar_logger.Progbar = EveryUpdate
    try:
        train_and_evaluate(config, splits, tmp_path / "run")
    finally:
        progbar_logger.Progbar = original
    counts = [tuple(map(int, part.split("/"))) for part in _counts(capsys.readouterr().out)]
    assert counts and all(seen <= total for seen, total in counts), counts
    assert (36, 36) in counts and (32, 36) in counts


def _counts(text: str) -> list[str]:
    import re

    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return re.findall(r"(\d+/\d+) ", plain)


# ---------------------------------------------------------------- k-fold numbering


@pytest.mark.slow
def test_kfold_numbers_folds_from_one_on_the_console_and_in_mlflow(workdir: Path) -> None:
    args = ("dataset.validation.holdout=null", "dataset.validation.folds=2", "trainer.epochs=1", "dataset.max_train_samples=120")
    done = cli("train", *args, "trainer.verbose=0", "tracking.log_model=false", *FAST, cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    console = sorted({line.split(":")[0] for line in done.stderr.splitlines() if line.startswith("fold ")})
    assert console == ["fold 1/2", "fold 2/2"]
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("digits_mlp").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    folds = sorted((r for r in runs if r is not parent), key=lambda r: r.data.tags["protocol.fold"])
    assert [r.data.tags["protocol.fold"] for r in folds] == ["1", "2"]
    assert [r.info.run_name for r in folds] == ["digits_mlp fold 1", "digits_mlp fold 2"]
    assert {"kfold.val_loss.fold1", "kfold.val_loss.fold2"} <= set(parent.data.metrics)
    assert "kfold.val_loss.fold0" not in parent.data.metrics
    (run_dir,) = output_dirs(workdir)
    assert sorted(p.name for p in run_dir.glob("fold-*")) == ["fold-1", "fold-2"]


# ---------------------------------------------------------------- params policy, in-process


def test_params_leave_out_interpolated_copies_other_sources_options_and_empty_lists() -> None:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    from expkit.config.locate import conf_dir
    from expkit.config.params import derived_keys, run_params
    from expkit.config.resolvers import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = hydra_compose("config", overrides=["+experiment=mnist_dense", "paths.root_dir=/tmp/x", "paths.output_dir=/tmp/x/run"])
    with open_dict(cfg):
        cfg.pop("hydra", None)
    params = run_params(OmegaConf.to_container(cfg, resolve=True), derived_keys(cfg))  # type: ignore[arg-type]
    assert params["model.units"] == 512 and params["model.layers.1.units"] == 10  # a literal layer width is a knob
    assert "model.layers.0.units" not in params  # "${model.units}": the same knob again
    assert params["dataset.source"] == "keras" and "dataset.color_mode" not in params and "dataset.on_bad_image" not in params
    assert "dataset.test_fraction" not in params  # Keras datasets have their own test split
    assert "phases" not in params and "dataset.augment" not in params and "dataset.preprocess.y" not in params
    assert params["optimizer.learning_rate"] == 0.001 and params["trainer.epochs"] == 5


def test_long_run_names_are_cut_between_values() -> None:
    from expkit.app import run_name

    overrides = [f"dataset.validation.holdout={i}000" for i in range(12)]
    name = run_name("mnist_dense", overrides, {overrides[3]})
    assert len(name) <= 100 and name.startswith("holdout=3000 mnist_dense holdout=0000 ") and name.endswith(" ...")
    assert all(word == "..." or word == "mnist_dense" or word in {o.split(".")[-1] for o in overrides} for word in name.split(" "))
    assert run_name("mnist_dense", ["seed=1"]) == "mnist_dense seed=1"


def test_tensorflow_retracing_warnings_of_sequential_sweep_jobs_are_dropped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Jobs run one after another in one process build new models; TensorFlow then warns about retracing (seen twice
    in a 3-job digits sweep before). Other TensorFlow warnings still show."""
    from expkit import cli as expkit_cli

    for name in ("MLFLOW_LOGGING_LEVEL", "TF_CPP_MIN_LOG_LEVEL"):  # quiet_start sets them: restored after the test
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    expkit_cli.quiet_start()
    tf_log = logging.getLogger("tensorflow")
    try:
        with caplog.at_level(logging.WARNING, logger="tensorflow"):
            tf_log.warning("5 out of the last 9 calls to <function f> triggered tf.function retracing. Tracing is expensive")
            tf_log.warning("something else")
        assert [r.getMessage() for r in caplog.records] == ["something else"]
    finally:
        tf_log.removeFilter(expkit_cli._not_retracing)
