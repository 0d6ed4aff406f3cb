"""expkit.config.validate.validate_config: schema, Keras names, task consistency, shipped presets."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf, open_dict

from expkit.config.catalog import CATALOG_FILE
from expkit.config.locate import conf_dir, group_options
from expkit.config.schema import ExperimentConfig
from expkit.config.validate import validate_config
from expkit.errors import ExpkitError
from tests.conftest import expkit_env


@pytest.fixture
def config(tmp_path: Path) -> dict[str, Any]:
    """A complete, valid experiment config as a plain dict (every group filled in)."""
    root = str(tmp_path)
    return {
        "name": "unit_test",
        "seed": 7,
        "paths": {"root_dir": root, "log_dir": f"{root}/outputs", "output_dir": f"{root}/outputs/run", "data_dir": f"{root}/data"},
        "dataset": {
            "source": "sklearn",
            "name": "digits",
            "path": None,
            "num_words": None,
            "test_fraction": 0.2,
            "max_train_samples": None,
            "max_test_samples": None,
            "preprocess": {"x": [{"op": "scale", "divisor": 16.0}], "y": []},
            "validation": {"holdout": 0.2, "split": None},
        },
        "model": {
            "layers": [
                {"type": "Dense", "units": 64, "activation": "relu"},
                {"type": "Dropout", "rate": 0.5},
                {"type": "Dense", "units": 10, "activation": "softmax"},
            ],
            "input_shape": None,
            "loss": "sparse_categorical_crossentropy",
            "metrics": ["accuracy"],
        },
        "optimizer": {"type": "Adam", "learning_rate": 0.001},
        "callbacks": {
            "terminate_on_nan": {"type": "TerminateOnNaN"},
            "early_stopping": {"type": "EarlyStopping", "monitor": "val_loss", "patience": 3, "restore_best_weights": True},
        },
        "trainer": {
            "epochs": 3,
            "batch_size": 32,
            "verbose": 0,
            "shuffle": True,
            "deterministic": False,
            "checkpoint_monitor": None,
            "threads": None,
        },
        "tracking": {
            "enabled": False,
            "uri": None,
            "experiment_name": "unit_test",
            "artifact_dir": f"{root}/mlartifacts",
            "log_model": False,
            "tensorboard": {"enabled": False, "histogram_freq": 0},
        },
    }


def error_of(cfg: Any) -> str:
    with pytest.raises(ExpkitError) as info:
        validate_config(cfg)
    return str(info.value)


def test_valid_config_passes(config: dict[str, Any]) -> None:
    before = copy.deepcopy(config)
    checked = validate_config(config)
    assert isinstance(checked, ExperimentConfig)
    assert checked.trainer.epochs == 3 and checked.dataset.validation.holdout == 0.2
    assert checked.dataset.preprocess.x[0].op == "scale" and checked.dataset.preprocess.x[0].divisor == 16.0
    assert checked.callbacks["early_stopping"]["patience"] == 3
    assert config == before  # the input is not modified


def test_minimal_config_gets_defaults(config: dict[str, Any]) -> None:
    del config["trainer"], config["callbacks"], config["seed"]
    config["dataset"] = {"source": "sklearn", "name": "digits"}
    checked = validate_config(config)
    assert checked.trainer.epochs == 10 and checked.trainer.batch_size == 32 and checked.seed == 42
    assert checked.callbacks == {} and checked.dataset.preprocess.x == []


# --- unknown keys -----------------------------------------------------------------------------


def test_misspelled_top_level_key(config: dict[str, Any]) -> None:
    config["nmae"] = config.pop("name")
    message = error_of(config)
    assert "nmae: unknown key" in message and "did you mean 'name'?" in message
    assert "name: required key is missing" in message
    assert message.startswith("2 problems in the config:")


def test_misspelled_nested_key(config: dict[str, Any]) -> None:
    config["trainer"]["epoch"] = config["trainer"].pop("epochs")
    message = error_of(config)
    assert message.startswith("trainer.epoch: unknown key")
    assert "did you mean 'trainer.epochs'?" in message
    assert "allowed: epochs, batch_size" in message


def test_abbreviated_key_suggests_the_full_name(config: dict[str, Any]) -> None:
    """Keras 2's `lr`, or `spe`, is read as the initials of the key it abbreviates."""
    spe = copy.deepcopy(config)
    spe["trainer"]["spe"] = 4
    assert "trainer.spe: unknown key (did you mean 'trainer.steps_per_execution'?" in error_of(spe)
    config["optimizer"]["lr"] = config["optimizer"].pop("learning_rate")
    assert "did you mean 'learning_rate'?" in error_of(config)


def test_misspelled_key_in_preprocessing_step(config: dict[str, Any]) -> None:
    config["dataset"]["preprocess"]["x"][0] = {"op": "scale", "divisr": 16.0}
    message = error_of(config)
    # The union tag ('scale') is not shown in the key path.
    assert message == "dataset.preprocess.x.0.divisr: unknown key"


def test_unknown_preprocessing_op(config: dict[str, Any]) -> None:
    config["dataset"]["preprocess"]["x"].append({"op": "standardise"})
    message = error_of(config)
    assert "dataset.preprocess.x.1: unknown op 'standardise'" in message and "did you mean 'standardize'?" in message


def test_misspelled_dataset_key(config: dict[str, Any]) -> None:
    config["dataset"]["num_word"] = 100
    assert "did you mean 'dataset.num_words'?" in error_of(config)


def test_missing_required_group(config: dict[str, Any]) -> None:
    del config["optimizer"]
    assert error_of(config) == "optimizer: required key is missing"


# --- values -----------------------------------------------------------------------------------


def test_wrong_type(config: dict[str, Any]) -> None:
    config["trainer"]["epochs"] = "ten"
    message = error_of(config)
    assert message.startswith("trainer.epochs:") and "whole number" in message and "'ten'" in message


@pytest.mark.parametrize("key", ["epochs", "batch_size"])
def test_zero_is_rejected(config: dict[str, Any], key: str) -> None:
    config["trainer"][key] = 0
    message = error_of(config)
    assert message == f"trainer.{key}: must be >= 1, got 0"


def test_holdout_and_split_together(config: dict[str, Any]) -> None:
    config["dataset"]["validation"]["split"] = 0.1
    message = error_of(config)
    assert message.startswith("dataset.validation:") and "not both" in message


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5])
def test_test_fraction_out_of_range(config: dict[str, Any], fraction: float) -> None:
    config["dataset"]["test_fraction"] = fraction
    assert error_of(config).startswith("dataset.test_fraction:")


@pytest.mark.parametrize("holdout", [0, 1.5])
def test_bad_holdout_is_reported(config: dict[str, Any], holdout: float) -> None:
    config["dataset"]["validation"]["holdout"] = holdout
    assert "dataset.validation.holdout" in error_of(config)


def test_bad_holdout_is_one_problem_with_a_clean_key(config: dict[str, Any]) -> None:
    config["dataset"]["validation"]["holdout"] = 0
    message = error_of(config)
    assert "constrained-" not in message
    assert message.startswith("dataset.validation.holdout:")


@pytest.mark.parametrize("rate", [1.5, 1, -0.1])
def test_dropout_rate_out_of_range(config: dict[str, Any], rate: float) -> None:
    config["model"]["layers"][1]["rate"] = rate
    message = error_of(config)
    assert message.startswith(f"model.layers.1.rate: dropout rate must be in [0, 1), got {rate}")


def test_dropout_rate_zero_is_allowed(config: dict[str, Any]) -> None:
    config["model"]["layers"][1]["rate"] = 0.0
    assert validate_config(config).model.layers[1]["rate"] == 0.0


# --- Keras names --------------------------------------------------------------------------------


def test_unknown_layer_type(config: dict[str, Any]) -> None:
    config["model"]["layers"][0]["type"] = "Dens"
    message = error_of(config)
    assert message.startswith("model.layers.0.type: unknown layer 'Dens'") and "did you mean 'Dense'?" in message


def test_unknown_layer_argument(config: dict[str, Any]) -> None:
    config["model"]["layers"][0]["unit"] = config["model"]["layers"][0].pop("units")
    message = error_of(config)
    assert message == "model.layers.0.unit: Dense has no argument 'unit' (did you mean 'units'?)"


def test_input_shape_is_a_layer_argument(config: dict[str, Any]) -> None:
    config["model"]["layers"][0]["input_shape"] = [64]
    validate_config(config)


def test_unknown_optimizer(config: dict[str, Any]) -> None:
    config["optimizer"]["type"] = "Adamm"
    message = error_of(config)
    assert message.startswith("optimizer.type: unknown optimizer 'Adamm'") and "did you mean" in message
    assert "adam" in message.lower()


def test_optimizer_name_is_case_insensitive(config: dict[str, Any]) -> None:
    config["optimizer"]["type"] = "rmsprop"
    assert validate_config(config).optimizer.type == "rmsprop"


def test_unknown_optimizer_argument(config: dict[str, Any]) -> None:
    config["optimizer"]["momentun"] = 0.9
    config["optimizer"]["type"] = "SGD"
    assert "optimizer.momentun: SGD has no argument 'momentun' (did you mean 'momentum'?)" in error_of(config)


def test_unknown_loss(config: dict[str, Any]) -> None:
    config["model"]["loss"] = "sparse_categorical_crossentropyy"
    message = error_of(config)
    assert message.startswith("model.loss: unknown loss 'sparse_categorical_crossentropyy'")
    assert "did you mean 'sparse_categorical_crossentropy'?" in message


def test_unknown_metric(config: dict[str, Any]) -> None:
    config["model"]["metrics"] = ["acuracy"]
    assert "model.metrics.0: unknown metric 'acuracy' (did you mean 'accuracy'?" in error_of(config)


def test_unknown_activation(config: dict[str, Any]) -> None:
    config["model"]["layers"][0]["activation"] = "rellu"
    assert error_of(config) == "model.layers.0.activation: unknown activation 'rellu' (did you mean 'relu'?)"


def test_unknown_callback_and_argument(config: dict[str, Any]) -> None:
    config["callbacks"]["early_stopping"]["patiance"] = config["callbacks"]["early_stopping"].pop("patience")
    config["callbacks"]["csv"] = {"type": "CSVLoger"}
    message = error_of(config)
    assert message.startswith("2 problems in the config:")
    assert "callbacks.early_stopping.patiance: EarlyStopping has no argument 'patiance' (did you mean 'patience'?)" in message
    assert "callbacks.csv.type: unknown callback 'CSVLoger'" in message and "did you mean 'CSVLogger'?" in message


def test_type_and_target_together(config: dict[str, Any]) -> None:
    config["model"]["layers"][0]["_target_"] = "keras.layers.Dense"
    assert error_of(config) == "model.layers.0: give either `type` or `_target_`, not both"


def test_target_alone_is_accepted(config: dict[str, Any]) -> None:
    config["model"]["layers"][0] = {"_target_": "mypackage.MyLayer", "anything": 1}
    validate_config(config)


def test_layer_without_type(config: dict[str, Any]) -> None:
    config["model"]["layers"][0] = {"units": 3}
    assert "model.layers.0: needs `type: <Keras layer name>`" in error_of(config)


def test_all_component_problems_reported_together(config: dict[str, Any]) -> None:
    config["model"]["layers"][0]["type"] = "Dens"
    config["model"]["loss"] = "msee"
    config["optimizer"]["type"] = "Adamm"
    message = error_of(config)
    assert message.startswith("3 problems in the config:")
    for key in ("model.layers.0.type", "model.loss", "optimizer.type"):
        assert f"\n  - {key}: " in message


# --- task consistency ------------------------------------------------------------------------


def test_categorical_crossentropy_on_one_sigmoid_unit(config: dict[str, Any]) -> None:
    config["model"]["layers"][-1] = {"type": "Dense", "units": 1, "activation": "sigmoid"}
    config["model"]["loss"] = "categorical_crossentropy"
    message = error_of(config)
    assert message.startswith("model.loss: categorical_crossentropy needs one output unit per class, but the last layer has 1 unit")
    assert "binary_crossentropy" in message


def test_sparse_loss_with_one_hot_labels(config: dict[str, Any]) -> None:
    config["dataset"]["preprocess"]["y"] = [{"op": "one_hot", "num_classes": 10}]
    message = error_of(config)
    assert "sparse_categorical_crossentropy expects integer labels" in message and "one-hot" in message
    assert "use categorical_crossentropy" in message


def test_categorical_loss_without_one_hot(config: dict[str, Any]) -> None:
    config["model"]["loss"] = "categorical_crossentropy"
    message = error_of(config)
    assert "categorical_crossentropy expects one-hot labels" in message and "sparse_categorical_crossentropy" in message


def test_categorical_loss_with_one_hot_passes(config: dict[str, Any]) -> None:
    config["model"]["loss"] = "categorical_crossentropy"
    config["dataset"]["preprocess"]["y"] = [{"op": "one_hot", "num_classes": 10}]
    validate_config(config)


def test_one_hot_classes_must_match_units(config: dict[str, Any]) -> None:
    config["model"]["loss"] = "categorical_crossentropy"
    config["dataset"]["preprocess"]["y"] = [{"op": "one_hot", "num_classes": 12}]
    assert "the last layer has 10 units but labels are one-hot with 12 classes" in error_of(config)


def test_binary_crossentropy_on_softmax(config: dict[str, Any]) -> None:
    config["model"]["loss"] = "binary_crossentropy"
    assert "binary_crossentropy on a 10-way softmax" in error_of(config)


# --- model hyperparameters ----------------------------------------------------------------------


def test_model_hyperparameter_not_used(config: dict[str, Any]) -> None:
    config["model"]["hidden_units"] = 64
    message = error_of(config)
    assert message.startswith("model.hidden_units: unknown key: not a model field and not used by any layer")
    assert "${model.hidden_units}" in message


def test_misspelled_model_field_suggests_field(config: dict[str, Any]) -> None:
    config["model"]["metric"] = ["mae"]
    assert "did you mean 'model.metrics'?" in error_of(config)


def test_used_hyperparameter_passes_in_dictconfig(config: dict[str, Any]) -> None:
    config["model"]["units"] = 48
    config["model"]["layers"][0]["units"] = "${model.units}"
    checked = validate_config(OmegaConf.create(config))
    assert checked.model.layers[0]["units"] == 48


def test_unused_hyperparameter_flagged_next_to_used_one_in_dictconfig(config: dict[str, Any]) -> None:
    config["model"]["units"] = 48
    config["model"]["unitz"] = 32
    config["model"]["layers"][0]["units"] = "${model.units}"
    message = error_of(OmegaConf.create(config))
    assert message.startswith("model.unitz: unknown key: not a model field and not used by any layer")
    assert "did you mean 'model.units'?" in message


def test_used_hyperparameter_passes_in_plain_dict(config: dict[str, Any]) -> None:
    config["model"]["units"] = 48
    config["model"]["layers"][0]["units"] = "${model.units}"
    checked = validate_config(config)
    assert checked.model.layers[0]["units"] == 48


def test_unresolvable_interpolation(config: dict[str, Any]) -> None:
    config["tracking"]["experiment_name"] = "${nope}"
    message = error_of(OmegaConf.create(config))
    assert message.startswith("tracking.experiment_name:") and "interpolation" in message


# --- shipped presets, catalog, imports ------------------------------------------------------


def validate_shipped(root: Path, *overrides: str) -> Any:
    """Compose the shipped config tree with `overrides` (outputs under `root`) and validate it, as the app does."""
    from hydra import compose, initialize_config_dir

    from expkit.config.resolvers import register_resolvers

    register_resolvers()  # expkit.stack, as the app registers it
    paths = [f"paths.root_dir={root}", f"paths.output_dir={root}/out"]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, *paths], return_hydra_config=True)
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return validate_config(cfg)


@pytest.mark.parametrize("preset", group_options("experiment"))
def test_shipped_preset_validates(preset: str, tmp_path: Path) -> None:
    root = tmp_path / "x"
    checked = validate_shipped(root, f"+experiment={preset}")
    assert checked.name == preset
    assert checked.paths.root_dir == str(root) and checked.paths.log_dir == f"{root}/outputs"
    assert checked.tracking.experiment_name == preset
    assert all(isinstance(layer.get("units", 0), int) for layer in checked.model.layers)  # interpolations resolved


def test_presets_exist() -> None:
    assert {"mnist_dense", "imdb_dense", "reuters_dense", "boston_final"} <= set(group_options("experiment"))


def test_keras_catalog_is_current() -> None:
    from expkit.training.keras_catalog import build_catalog

    stored = json.loads(CATALOG_FILE.read_text())
    fresh = json.loads(json.dumps(build_catalog()))
    assert stored["keras_version"] == fresh["keras_version"], "regenerate with `python -m expkit.training.keras_catalog`"
    for section in fresh:
        assert stored.get(section) == fresh[section], f"keras_catalog.json section {section!r} is stale"
    assert set(stored) == set(fresh)
    assert "Dense" in stored["layers"] and "units" in stored["layers"]["Dense"]


def test_validate_imports_no_tensorflow_or_mlflow(tmp_path: Path) -> None:
    code = "import expkit.config.validate, sys; assert 'tensorflow' not in sys.modules and 'mlflow' not in sys.modules, sorted(sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=expkit_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("search", group_options("hparams_search"))
def test_shipped_search_space_validates_on_its_preset(search: str, tmp_path: Path) -> None:
    """A search preset's hyperparameters are used by another model key (`hidden`, stacked into `layers`): not unknown keys."""
    preset = search.removesuffix("_optuna")
    checked = validate_shipped(tmp_path / "x", f"+experiment={preset}", f"+hparams_search={search}")
    assert checked.name == preset and checked.objective.metric.startswith("val_")  # a search chooses on validation
