"""Errors found before training are found before anything is recorded (issue 27): the pre-flight (files, sources,
split sizes, target shapes), the validation of layer arguments, YAML errors with their line, a parent preset's
hyperparameters, and soft targets.

The CLI tests import no TensorFlow (they stop before training), so they are quick; the one that trains is marked slow.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from expkit.errors import ExpkitError
from tests.conftest import run_inprocess
from tests.datagen import write_image_npz

# --- helpers ------------------------------------------------------------------------------------------------------


def recorded(root: Path) -> tuple[int, list[Path]]:
    """(MLflow runs in root/mlflow.db, every file or folder below root/outputs)."""
    db = root / "mlflow.db"
    runs = 0
    if db.exists():
        with sqlite3.connect(db) as con:
            tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
            runs = con.execute("select count(*) from runs").fetchone()[0] if "runs" in tables else 0
    outputs = sorted((root / "outputs").rglob("*")) if (root / "outputs").exists() else []
    return runs, outputs


def assert_nothing_recorded(root: Path) -> None:
    runs, outputs = recorded(root)
    assert runs == 0, f"{runs} MLflow run(s) were created"
    assert outputs == [], f"run folders were created: {outputs[:5]}"


def small_mnist(root: Path, n_train: int = 300, n_test: int = 60) -> Path:
    return write_image_npz(root / "mnist.npz", n_train=n_train, n_test=n_test)


def check(*args: str, dirs: list[Path] | None = None) -> Any:
    """What the CLI checks before Hydra starts, in-process: compose (first sweep values), validate, pre-flight."""
    from expkit.config.overrides import check_overrides
    from expkit.launch_check import check_command

    flags = [a for d in dirs or [] for a in ("--config-dir", str(d))]
    cfg = check_overrides([*flags, *args])
    return check_command([*flags, *args], cfg)


def error_of(*args: str, dirs: list[Path] | None = None) -> str:
    with pytest.raises(ExpkitError) as caught:
        check(*args, dirs=dirs)
    return str(caught.value)


def preset(folder: Path, name: str, text: str) -> Path:
    (folder / "experiment").mkdir(parents=True, exist_ok=True)
    (folder / "experiment" / f"{name}.yaml").write_text("# @package _global_\n" + text)
    return folder


# --- 1. before any run or run folder ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["+experiment=mnist_dense", "dataset.path={tmp}/nope.npz"], ["dataset.path", "nope.npz", "does not exist"]),
        (["dataset.source=csv"], ["dataset.source", "unknown dataset source 'csv'", "npz", "random"]),
        (["+experiment=mnist_dense", "dataset.path={data}", "dataset.validation.holdout=500"], ["holdout of 500", "300 training"]),
        (
            ["+experiment=mnist_dense", "dataset.path={data}", "dataset.max_train_samples=100", "dataset.validation.holdout=200"],
            ["dataset.validation.holdout", "100 training samples", "max_train_samples"],
        ),
        (["dataset=image_dir", "dataset.path={tmp}", "dataset.image_size=[16,16]"], ["dataset.path", "train does not exist"]),
    ],
    ids=["missing-file", "unknown-source", "holdout-larger-than-data", "holdout-larger-than-max-train", "image-folder-without-train"],
)
def test_config_errors_exit_2_before_a_run_or_folder_exists(workdir: Path, overrides: list[str], expected: list[str]) -> None:
    data = small_mnist(workdir)
    args = [o.format(tmp=workdir, data=data) for o in overrides]
    done = run_inprocess("train", *args, cwd=workdir)
    assert done.returncode == 2, done.stderr
    assert all(text in done.stderr for text in expected), done.stderr
    assert "Traceback" not in done.stderr
    assert_nothing_recorded(workdir)


def test_holdout_against_the_real_mnist_size_needs_no_data_file(tmp_path: Path) -> None:
    # No local file: the size is MNIST's published 60,000 (the download's fixed content), not a load.
    message = error_of("+experiment=mnist_dense", "dataset.validation.holdout=70000", f"paths.root_dir={tmp_path}")
    assert "holdout of 70000 samples" in message and "60000 training samples" in message


def test_a_sweep_whose_every_job_has_the_same_error_stops_before_its_first_job(workdir: Path) -> None:
    data = small_mnist(workdir)
    common = ["+experiment=mnist_dense", f"dataset.path={data}", "dataset.max_train_samples=100", "dataset.validation.holdout=200"]
    done = run_inprocess("train", "-m", *common, "optimizer.learning_rate=1e-3,1e-4", "hydra/launcher=joblib", cwd=workdir)
    assert done.returncode == 2, done.stderr
    assert "every job of this sweep would fail" in done.stderr and "holdout of 200" in done.stderr, done.stderr
    assert "Launching" not in done.stdout + done.stderr
    assert_nothing_recorded(workdir)


def test_an_optuna_search_whose_every_trial_has_the_same_error_stops_before_its_first_trial(workdir: Path) -> None:
    # The case: the search preset's 10,000-sample holdout, larger than the training data (here 300 samples).
    data = small_mnist(workdir)
    done = run_inprocess(
        "train", "-m", "+experiment=mnist_dense", "+hparams_search=mnist_dense_optuna", f"dataset.path={data}",
        "dataset.max_train_samples=5000", cwd=workdir,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "every job of this sweep would fail" in done.stderr and "holdout of 10000 samples" in done.stderr, done.stderr
    assert "optuna study" not in done.stderr
    assert_nothing_recorded(workdir)


def test_a_sweep_with_one_good_point_is_not_stopped(tmp_path: Path) -> None:
    # Only holdout=5000 is too large for digits' 1,437 training samples: that job fails alone, the sweep runs.
    check("-m", "dataset.validation.holdout=5000,100", f"paths.root_dir={tmp_path}")
    message = error_of("-m", "dataset.validation.holdout=5000,6000", f"paths.root_dir={tmp_path}")
    assert "every job of this sweep would fail" in message and "1437 training samples" in message


def test_sweep_points_compose_as_hydra_composes_each_one(tmp_path: Path) -> None:
    """Swept values only (no group): the fixed part is composed once and each point's values are set by Hydra's own
    override step; the configs equal a full composition of each point, and an unknown key still fails as it would."""
    from omegaconf import OmegaConf

    from expkit.config.overrides import _compose
    from expkit.launch_check import point_composer

    fixed = ["+experiment=imdb_dense", "optimizer=adam", f"paths.root_dir={tmp_path}"]
    points = [
        [*fixed, "optimizer.learning_rate=1e-3", "model.units=16", "+dataset.note=a", "dataset.validation={holdout: 5000}"],
        [*fixed, "optimizer.learning_rate=0.01", "model.units=[4,8]", "+dataset.note=null", "dataset.validation={folds: 3}"],
    ]
    keys = ["optimizer.learning_rate", "model.units", "+dataset.note", "dataset.validation"]
    compose_point = point_composer(fixed, keys, [])
    assert compose_point.__name__ == "values_set"
    for point in points:
        fast, full = compose_point(point), _compose(point, [])
        assert OmegaConf.to_container(fast) == OmegaConf.to_container(full)
    with pytest.raises(Exception, match=r"Could not override 'optimizer\.learning_rat'"):
        compose_point([*fixed, "optimizer.learning_rat=1"])
    assert point_composer(fixed, ["optimizer", "seed"], []).__name__ == "compose", "a swept group composes each point"
    assert point_composer(["+experiment=nope"], ["seed"], []).__name__ == "compose"


@pytest.mark.parametrize(
    "overrides",
    [
        ["+experiment=mnist_dense", "model.layers=[{type: Dense, units: 3}]", "~model.units", "seed=7"],
        ["+experiment=imdb_dense", "+callbacks.extra={_target_: a.b, x: 1}", "dataset.validation={holdout: 100}"],
        ["trainer.epochs=3", "++trainer.new_key=1", "optimizer=sgd", "optimizer.learning_rate=1e-3", "name=x"],
        ["dataset=text_dir", "dataset.path=/data/t", "+dataset.vectorize.ngrams=2", "model.layers.0.units=5"],
    ],
)
def test_values_set_on_a_composition_equal_a_full_composition(overrides: list[str]) -> None:
    """What the test helper conftest.compose_config and the sweep points rely on."""
    from omegaconf import OmegaConf

    from expkit.config.overrides import _compose, picks_files, with_values

    files = [o for o in overrides if picks_files(o.split("=", 1)[0], [])]
    values = [o for o in overrides if o not in files]
    assert files and values
    assert OmegaConf.to_container(with_values(_compose(files, []), values)) == OmegaConf.to_container(_compose(overrides, []))


@pytest.mark.parametrize(("override", "key"), [("name=''", "name"), ("name=[a]", "name"), ("paths.log_dir=' '", "paths.log_dir")])
def test_a_run_folder_name_that_is_not_a_non_empty_string_is_refused_before_hydra(override: str, key: str) -> None:
    from expkit.config.overrides import check_overrides

    with pytest.raises(ExpkitError) as caught:
        check_overrides([override])
    assert caught.value.key == key and "must be a non-empty string (it names the run folder)" in str(caught.value)


def test_sweep_points_cover_every_value_of_a_large_grid() -> None:
    from expkit.launch_check import sweep_points

    swept = {"a": [str(i) for i in range(10)], "b": [str(i) for i in range(10)]}
    points = sweep_points(["x=1"], swept)
    assert len(points) == 1 + 9 + 9 + 1  # the first point, each value alone, the last point
    assert {p[1] for p in points} == {f"a={i}" for i in range(10)} and {p[2] for p in points} == {f"b={i}" for i in range(10)}
    assert all(p[0] == "x=1" for p in points)
    assert len(sweep_points([], {"a": ["1", "2"], "b": ["3", "4"]})) == 4  # a small grid: every point


def test_a_job_whose_own_values_are_wrong_fails_before_its_run_starts(tmp_path: Path) -> None:
    # In a sweep job (or any caller of the task), the pre-flight runs right after validation.
    from expkit.preflight import preflight
    from tests.conftest import compose

    config = compose("dataset.validation.holdout=100", root=tmp_path)
    assert preflight(config) is config
    config.dataset.validation.holdout = 5000
    with pytest.raises(ExpkitError, match="holdout of 5000"):
        preflight(config)


# --- 2. validate checks layer arguments without TensorFlow ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("'one hundred'", "whole number, got 'one hundred'"), ("12.5", "whole number, got 12.5"), ("-3", "at least 1"), ("0", "at least 1")],
)
def test_validate_refuses_unit_counts_the_build_would_reject(tmp_path: Path, value: str, expected: str) -> None:
    message = error_of(f"model.units={value}", f"paths.root_dir={tmp_path}")
    assert message.startswith("model.units") and expected in message, message


def test_validate_checks_other_layer_arguments(tmp_path: Path) -> None:
    message = error_of("+experiment=mnist_convnet", "model.layers.0.kernel_size=[3, -1]", f"paths.root_dir={tmp_path}")
    assert message.startswith("model.layers.0.kernel_size") and "positive whole number" in message
    message = error_of("+experiment=mnist_convnet", "model.layers.0.filters=many", f"paths.root_dir={tmp_path}")
    assert message.startswith("model.layers.0.filters") and "whole number" in message


def test_validate_checks_optimizer_and_callback_settings(tmp_path: Path) -> None:
    message = error_of("optimizer=sgd", "+optimizer.momentum=1.5", f"paths.root_dir={tmp_path}")
    assert message.startswith("optimizer.momentum") and "[0, 1]" in message
    message = error_of("callbacks=early_stopping", "callbacks.early_stopping.patience=-1", f"paths.root_dir={tmp_path}")
    assert message.startswith("callbacks.early_stopping.patience") and ">= 0" in message


def test_a_word_for_a_number_gets_a_plain_message_and_a_hint(tmp_path: Path) -> None:
    message = error_of("trainer.epochs=two", f"paths.root_dir={tmp_path}")
    assert message.startswith("trainer.epochs: must be a whole number, got 'two'"), message
    assert "e.g. 10" in message and "Input should be" not in message


def test_validate_cli_refuses_a_zero_width_layer(workdir: Path) -> None:
    done = run_inprocess("validate", "model.units=0", cwd=workdir)
    assert done.returncode == 2 and "model.units" in done.stderr and "at least 1" in done.stderr, done.stderr


# --- 3. YAML errors keep their file and line ---------------------------------------------------------------------------


def test_a_duplicate_key_in_a_preset_names_the_file_and_line(tmp_path: Path) -> None:
    folder = preset(tmp_path / "conf", "dup", "name: dup\ntrainer:\n  epochs: 2\n  epochs: 3\n")
    message = error_of("+experiment=dup", dirs=[folder])
    assert "found duplicate key epochs" in message and str(folder / "experiment" / "dup.yaml") in message and "line 5" in message


def test_a_yaml_syntax_error_in_a_preset_names_the_file_and_line(workdir: Path) -> None:
    folder = preset(workdir / "conf", "broken", "name: broken\ntrainer: [1, 2\n")
    done = run_inprocess("train", "--config-dir", str(folder), "+experiment=broken", cwd=workdir)
    assert done.returncode == 2
    assert "broken.yaml" in done.stderr and "line 4" in done.stderr and "expected ',' or ']'" in done.stderr, done.stderr


# --- 4. a parent preset's own hyperparameters --------------------------------------------------------------------------

WIDE = """defaults:
  - mnist_dense
  - _self_
name: wide
model:
  layers:
    - {type: Dense, units: 256, activation: relu}
    - {type: Dense, units: 10, activation: softmax}
"""


def test_a_preset_extending_another_may_write_its_own_layers(tmp_path: Path) -> None:
    folder = preset(tmp_path / "conf", "wide", WIDE)
    config = check("+experiment=wide", f"paths.root_dir={tmp_path}", dirs=[folder])
    assert config is None  # passed
    from expkit.config.overrides import _compose
    from expkit.launch_check import check_config

    validated = check_config(_compose(["+experiment=wide", f"paths.root_dir={tmp_path}"], [folder]), [folder])
    assert validated.model.layers[0]["units"] == 256 and "units" not in (validated.model.model_extra or {})


def test_an_unused_key_the_user_wrote_is_still_refused(tmp_path: Path) -> None:
    folder = preset(tmp_path / "conf", "wide", WIDE)
    for written in ("model.units=5", "+model.unitz=5"):
        message = error_of("+experiment=wide", written, f"paths.root_dir={tmp_path}", dirs=[folder])
        assert "not used by any layer" in message and written.lstrip("+").split("=")[0] in message
        assert "written in" not in message  # the user wrote it on the command line


def test_an_unused_key_a_preset_wrote_names_the_preset(tmp_path: Path) -> None:
    folder = preset(tmp_path / "conf", "wide", WIDE.replace("model:\n", "model:\n  units: 1024\n"))
    message = error_of("+experiment=wide", f"paths.root_dir={tmp_path}", dirs=[folder])
    assert message.startswith("model.units") and f"written in {folder / 'experiment' / 'wide.yaml'}" in message, message


# --- 5. soft targets ---------------------------------------------------------------------------------------------------

TOY_MODEL = """model:
  inputs: {features: {}}
  nodes:
    - {name: hidden, in: features, type: Dense, units: 16, activation: relu}
  outputs:
    label: {type: Dense, units: 10, activation: softmax, loss: categorical_crossentropy, metrics: [accuracy]}
trainer:
  epochs: 1
  batch_size: 64
"""
# The book's functional toy model (W ch. 5) on random data whose targets are already 10 values per sample.
TOY = (
    """defaults:
  - override /dataset: random
name: toy
dataset:
  inputs:
    features: {shape: [32]}
  targets:
    label: {shape: [10]}
"""
    + TOY_MODEL
)


@pytest.mark.parametrize("loss", ["categorical_crossentropy", "{type: CategoricalCrossentropy}", "CategoricalCrossentropy"])
def test_ten_wide_targets_take_a_categorical_loss(tmp_path: Path, loss: str) -> None:
    folder = preset(tmp_path / "conf", "toy", TOY)
    check("+experiment=toy", f"model.outputs.label.loss={loss}", f"paths.root_dir={tmp_path}", dirs=[folder])


def test_target_shapes_still_decide_against_a_wrong_loss(tmp_path: Path) -> None:
    folder = preset(tmp_path / "conf", "toy", TOY)
    root = f"paths.root_dir={tmp_path}"
    message = error_of("+experiment=toy", "model.outputs.label.loss=sparse_categorical_crossentropy", root, dirs=[folder])
    assert "expects integer labels" in message and "10 values per sample" in message
    message = error_of("+experiment=toy", "dataset.targets.label.shape=[]", root, dirs=[folder])
    assert "one label per sample" in message and "sparse_categorical_crossentropy" in message
    message = error_of("+experiment=toy", "model.outputs.label.units=4", root, dirs=[folder])
    assert "4 units" in message and "10 values per sample" in message


def test_soft_targets_in_an_npz_are_read_from_its_header(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    soft = rng.dirichlet(np.ones(10), 80).astype(np.float32)
    file = tmp_path / "toy.npz"
    np.savez(file, f_train=rng.random((80, 32), np.float32), f_test=rng.random((20, 32), np.float32), y_train=soft, y_test=soft[:20])
    text = f"defaults:\n  - override /dataset: _base\nname: toy\ndataset:\n  source: npz\n  name: toy\n  path: {file}\n"
    text += "  inputs: {features: f}\n  targets: {label: y}\n" + TOY_MODEL
    folder = preset(tmp_path / "conf", "toy_npz", text)
    check("+experiment=toy_npz", f"paths.root_dir={tmp_path}", dirs=[folder])
    message = error_of("+experiment=toy_npz", "model.outputs.label.loss=sparse_categorical_crossentropy", dirs=[folder])
    assert "10 values per sample" in message


def test_integer_labels_for_a_categorical_loss_are_refused_before_fit() -> None:
    from expkit.training.runner import check_output_labels

    with pytest.raises(ExpkitError, match="one value per class"):
        check_output_labels(10, {"type": "CategoricalCrossentropy"}, np.arange(10), loss_key="model.loss", layer_key="model.layers")
    check_output_labels(10, {"type": "CategoricalCrossentropy"}, np.eye(10, dtype=np.float32), loss_key="k", layer_key="l")


@pytest.mark.slow
def test_the_books_functional_toy_model_trains_on_soft_targets(workdir: Path) -> None:
    folder = preset(workdir / "conf", "toy", TOY)
    done = run_inprocess(
        "train", "--config-dir", str(folder), "+experiment=toy", "model.outputs.label.loss={type: CategoricalCrossentropy}",
        "tracking=none", cwd=workdir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "test_accuracy" in done.stdout


# --- fuzzing: the checks before Hydra never crash ------------------------------------------------------------------------


@pytest.mark.slow
def test_random_overrides_never_crash_the_checks_before_hydra() -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from expkit.config.overrides import check_overrides
    from expkit.launch_check import check_command
    from tests.test_fuzz import OVERRIDE

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])  # see test_fuzz.py
    @given(st.lists(OVERRIDE, max_size=4), st.booleans())
    def run(overrides: list[str], sweep: bool) -> None:
        args = ["-m", *overrides] if sweep else overrides
        with contextlib.suppress(ExpkitError):  # a clean error is fine; anything else is a crash
            check_command(args, check_overrides(args))

    run()


def test_a_config_dir_naming_no_users_home_is_one_clear_error() -> None:
    # Found by test_fuzz: `--config-dir ~trainer.epochs` crashed in pathlib ("Could not determine home directory").
    from expkit.config.overrides import split_args

    with pytest.raises(ExpkitError, match=r"cannot expand '~trainer\.epochs'") as caught:
        split_args(["--config-dir", "~trainer.epochs"])
    assert caught.value.key == "--config-dir"
