"""Graph models from YAML: presets build with the parameter counts of the same models written in raw Keras,
shared layers share weights, blocks do not, whole models work as layers, bad graphs fail before TensorFlow is imported and name the node."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from expkit.config import validate_config
from expkit.errors import ExpkitError
from tests.conftest import compose_config, mlflow_runs, output_dirs, read_metrics, run_inprocess
from tests.datagen import write_imdb_npz

keras = pytest.importorskip("keras")
L = keras.layers


def compose(preset: str, tmp_path: Path, *overrides: str) -> Any:
    root = tmp_path / "run"
    args = [f"+experiment={preset}", f"paths.root_dir={root}", f"paths.output_dir={root}/out", f"paths.data_dir={tmp_path}", *overrides]
    return compose_config(*args)


def build_preset(preset: str, tmp_path: Path, *overrides: str) -> Any:
    """The preset's model, built in-process the way `expkit train` builds it (data loaded, names mapped)."""
    from expkit.data import load_splits
    from expkit.training.runner import build_configured_model, check_all_labels, compile_configured, name_splits

    config = validate_config(compose(preset, tmp_path, *overrides))
    splits = name_splits(config.model, load_splits(config.dataset, data_dir=config.paths.data_dir, seed=config.seed))
    keras.utils.clear_session()
    model = build_configured_model(config, splits)
    compile_configured(model, config)
    check_all_labels(model, config, splits)
    return model


def n_trainable(model: Any) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# --- raw Keras versions of the chapter-5 presets (written independently of the YAML) ----------------------


def raw_multi_input() -> Any:
    text = keras.Input((100,), dtype="int32")
    question = keras.Input((20,), dtype="int32")
    t = L.LSTM(32)(L.Embedding(10000, 64)(text))
    q = L.LSTM(16)(L.Embedding(10000, 32)(question))
    return keras.Model([text, question], L.Dense(500, activation="softmax")(L.Concatenate()([t, q])))


def raw_multi_output() -> Any:
    posts = keras.Input((100,), dtype="int32")
    x = L.Embedding(10000, 256)(posts)
    x = L.MaxPooling1D(5)(L.Conv1D(128, 5, activation="relu")(x))
    x = L.Conv1D(256, 5, activation="relu")(L.Conv1D(256, 5, activation="relu")(x))
    x = L.MaxPooling1D(5)(x)
    x = L.Conv1D(256, 5, activation="relu", padding="same")(L.Conv1D(256, 5, activation="relu", padding="same")(x))
    x = L.Dense(128, activation="relu")(L.GlobalMaxPooling1D()(x))
    return keras.Model(posts, [L.Dense(1)(x), L.Dense(10, activation="softmax")(x), L.Dense(1, activation="sigmoid")(x)])


def raw_shared_lstm() -> Any:
    left, right = keras.Input((20, 128)), keras.Input((20, 128))
    lstm = L.LSTM(32)
    return keras.Model([left, right], L.Dense(1, activation="sigmoid")(L.Concatenate()([lstm(left), lstm(right)])))


def raw_residual() -> Any:
    def block(x: Any, filters: int, strides: int = 1) -> Any:
        y = L.Conv2D(filters, 3, strides=strides, padding="same", activation="relu")(x)
        y = L.Conv2D(filters, 3, padding="same")(y)
        shortcut = x if x.shape[-1] == filters and strides == 1 else L.Conv2D(filters, 1, strides=strides, padding="same")(x)
        return L.Activation("relu")(L.Add()([y, shortcut]))

    image = keras.Input((32, 32, 3))
    x = L.Conv2D(32, 3, padding="same", activation="relu")(image)
    x = block(block(block(x, 32), 64, 2), 64)
    return keras.Model(image, L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(x)))


def raw_inception() -> Any:
    def module(x: Any, f: int) -> Any:
        a = L.Conv2D(f, 1, strides=2, activation="relu")(x)
        b = L.Conv2D(f, 3, strides=2, padding="same", activation="relu")(L.Conv2D(f, 1, activation="relu")(x))
        c = L.Conv2D(f, 3, padding="same", activation="relu")(L.AveragePooling2D(3, strides=2, padding="same")(x))
        d = L.Conv2D(f, 3, padding="same", activation="relu")(L.Conv2D(f, 1, activation="relu")(x))
        d = L.Conv2D(f, 3, strides=2, padding="same", activation="relu")(d)
        return L.Concatenate()([a, b, c, d])

    image = keras.Input((32, 32, 3))
    x = module(module(L.Conv2D(32, 3, padding="same", activation="relu")(image), 16), 32)
    return keras.Model(image, L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(x)))


def raw_separable_conv() -> Any:
    s = lambda f: L.SeparableConv2D(f, 3, activation="relu")  # noqa: E731
    layers = [s(32), s(64), L.MaxPooling2D(2), s(64), s(128), L.MaxPooling2D(2), s(64), s(128), L.GlobalAveragePooling2D()]
    return keras.Sequential([keras.Input((64, 64, 3)), *layers, L.Dense(32, activation="relu"), L.Dense(10, activation="softmax")])


def raw_batchnorm_conv() -> Any:
    bn = lambda: [L.BatchNormalization(), L.Activation("relu")]  # noqa: E731
    return keras.Sequential(
        [
            *[keras.Input((28, 28, 1)), L.Conv2D(32, 3, use_bias=False), *bn(), L.MaxPooling2D(2), L.Conv2D(64, 3, use_bias=False), *bn()],
            *[L.Flatten(), L.Dense(64, use_bias=False), *bn(), L.Dense(10, activation="softmax")],
        ]
    )


def raw_batchnorm_dense() -> Any:
    return keras.Sequential(
        [
            *[keras.Input((64,)), L.Dense(128, activation="relu"), L.BatchNormalization(), L.Dense(64, activation="relu")],
            *[L.BatchNormalization(), L.Dense(10, activation="softmax")],
        ]
    )


def raw_imdb_conv1d() -> Any:
    return keras.Sequential(
        [
            *[keras.Input((500,)), L.Embedding(2000, 128), L.Conv1D(32, 7, activation="relu"), L.MaxPooling1D(5)],
            *[L.Conv1D(32, 7, activation="relu"), L.GlobalMaxPooling1D(), L.Dense(1, activation="sigmoid")],
        ]
    )


PRESETS = {
    "multi_input": (raw_multi_input, ["answer"]),
    "multi_output": (raw_multi_output, ["age", "gender", "income"]),
    "shared_lstm": (raw_shared_lstm, ["same"]),
    "residual": (raw_residual, ["label"]),
    "inception": (raw_inception, ["label"]),
    "separable_conv": (raw_separable_conv, None),
    "batchnorm_conv": (raw_batchnorm_conv, None),
    "batchnorm_dense": (raw_batchnorm_dense, None),
    "imdb_conv1d": (raw_imdb_conv1d, None),
}


# Quick: a block preset, a multi-output graph and a shared layer; the other book graphs in the slow set.
QUICK_PRESETS = ("inception", "multi_output", "shared_lstm")


@pytest.mark.parametrize("preset", [p if p in QUICK_PRESETS else pytest.param(p, marks=pytest.mark.slow) for p in sorted(PRESETS)])
def test_preset_builds_the_same_model_as_raw_keras(preset: str, tmp_path: Path) -> None:
    write_imdb_npz(tmp_path / "imdb.npz", n_train=40, n_test=20, vocab=3000)
    raw, output_names = PRESETS[preset]
    keras.utils.clear_session()
    expected = raw()
    model = build_preset(preset, tmp_path)
    assert model.count_params() == expected.count_params()
    assert n_trainable(model) == n_trainable(expected)
    if output_names is not None:
        assert sorted(model.output_names) == output_names


# --- shared layers, blocks, whole models as layers --------------------------------------------------


def test_shared_layer_is_one_layer_with_one_set_of_weights(tmp_path: Path) -> None:
    model = build_preset("shared_lstm", tmp_path)
    lstms = [layer for layer in model.layers if isinstance(layer, L.LSTM)]
    assert [layer.name for layer in lstms] == ["encoder"]
    # One LSTM(32) on 128 features: 4 * (128 + 32 + 1) * 32 weights, counted once.
    assert n_trainable(lstms[0]) == 4 * (128 + 32 + 1) * 32
    assert model.count_params() == n_trainable(lstms[0]) + (64 + 1)


def test_block_used_twice_has_two_sets_of_weights(tmp_path: Path) -> None:
    model = build_preset("residual", tmp_path)
    first, third = model.get_layer("res1_conv1"), model.get_layer("res3_conv1")
    assert first is not third
    assert first.kernel.shape[-1] == 32 and third.kernel.shape[-1] == 64
    # res2 changes shape (64 filters, strides 2): only its shortcut has a 1x1 projection.
    projections = [layer.name for layer in model.layers if "proj" in layer.name]
    assert projections == ["res2_add_proj1"] and model.get_layer("res2_add_proj1").strides == (2, 2)
    # Two instances with the same arguments are still two sets.
    model = build_preset("residual", tmp_path, "model.nodes.1.filters=64", "model.nodes.3.filters=64")
    assert not np.shares_memory(keras.ops.convert_to_numpy(model.get_layer("res1_conv2").kernel), model.get_layer("res3_conv2").kernel)
    assert model.get_layer("res1_conv2").kernel.path != model.get_layer("res3_conv2").kernel.path


def small_image_config(tmp_path: Path, layers: list[dict[str, Any]]) -> dict[str, Any]:
    root = str(tmp_path)
    return {
        "name": "frozen_base",
        "paths": {"root_dir": root, "log_dir": f"{root}/outputs", "output_dir": f"{root}/outputs/run"},
        "dataset": {
            "source": "random",
            "name": "random",
            "train_samples": 8,
            "test_samples": 4,
            "inputs": {"image": {"shape": [32, 32, 3], "dtype": "uint8", "high": 256}},
            "targets": {"label": {"dtype": "int32", "high": 2}},
        },
        "model": {"layers": layers, "loss": "binary_crossentropy"},
        "optimizer": {"type": "RMSprop", "learning_rate": 2e-5},
        "tracking": {"enabled": False, "experiment_name": "x", "artifact_dir": f"{root}/a"},
    }


def test_frozen_vgg16_base_leaves_only_the_head_trainable(tmp_path: Path) -> None:
    from expkit.data import load_splits
    from expkit.training.runner import build_configured_model, name_splits

    base = {"type": "VGG16", "weights": None, "include_top": False, "input_shape": [32, 32, 3], "trainable": False}
    head = [{"type": "Flatten"}, {"type": "Dense", "units": 1, "activation": "sigmoid"}]
    config = validate_config(small_image_config(tmp_path, [base, *head]))
    splits = name_splits(config.model, load_splits(config.dataset, data_dir=None, seed=0))
    model = build_configured_model(config, splits)
    vgg = model.get_layer("vgg16")
    assert vgg.name == "vgg16" and not vgg.trainable and vgg.count_params() == 14_714_688
    # The head: Dense(1) on VGG16's 1x1x512 output at 32x32 input.
    assert n_trainable(model) == 512 + 1 and len(model.trainable_weights) == 2
    assert model.count_params() == 14_714_688 + 513


def test_application_and_trainable_are_checked_before_tensorflow(tmp_path: Path) -> None:
    base = {"type": "VGG16", "weigths": None, "include_top": False}
    with pytest.raises(ExpkitError, match=r"model.layers.0.weigths: VGG16 has no argument 'weigths' \(did you mean 'weights'\?\)"):
        validate_config(small_image_config(tmp_path, [base, {"type": "Dense", "units": 1, "activation": "sigmoid"}]))
    ok = [{"type": "Dense", "units": 4, "trainable": False}, {"type": "Dense", "units": 1, "activation": "sigmoid"}]
    assert validate_config(small_image_config(tmp_path, ok)).model.layers[0]["trainable"] is False


def test_missing_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    from expkit.models.builder import build_layer

    with pytest.raises(ExpkitError, match=r"model.layers.0: cannot create VGG16: weights file .*nope.h5 does not exist"):
        build_layer({"type": "VGG16", "weights": str(tmp_path / "nope.h5"), "include_top": False}, key="model.layers.0")


def make_head(units: int) -> Any:
    """A `_target_` function returning a whole keras Model, used as one layer."""
    return keras.Sequential([L.Dense(units, activation="relu"), L.Dense(units)], name="head")


def test_target_model_and_registered_layer_in_a_graph(tmp_path: Path) -> None:
    from expkit.data import load_splits
    from expkit.models.builder import LAYERS
    from expkit.training.runner import build_configured_model, name_splits

    @LAYERS.register("Doubled")
    class Doubled(L.Layer):
        def __init__(self, factor: float = 2.0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x: Any) -> Any:
            return x * self.factor

    cfg = small_image_config(tmp_path, [])
    cfg["dataset"]["inputs"] = {"features": {"shape": [6]}}
    cfg["model"] = {
        "inputs": {"features": {}},
        "nodes": [
            {"name": "twice", "type": "Doubled", "factor": 3.0},
            {"name": "head", "_target_": "tests.test_graph.make_head", "units": 4},
        ],
        "outputs": {"label": {"type": "Dense", "units": 1, "activation": "sigmoid", "loss": "binary_crossentropy"}},
    }
    bad = copy.deepcopy(cfg)
    bad["model"]["nodes"][0]["factr"] = 1.0
    with pytest.raises(ExpkitError, match=r"model.nodes.twice.factr: Doubled has no argument 'factr' \(did you mean 'factor'\?\)"):
        validate_config(bad)
    config = validate_config(cfg)
    splits = name_splits(config.model, load_splits(config.dataset, data_dir=None, seed=0))
    model = build_configured_model(config, splits)
    assert model.count_params() == (6 * 4 + 4) + (4 * 4 + 4) + (4 + 1)
    x = np.ones((1, 6), np.float32)
    assert np.allclose(model.get_layer("twice")(x), 3.0)


# --- data by name ----------------------------------------------------------------------------------


def dataset_node(**options: Any) -> Any:
    from expkit.config.schema import Dataset

    return Dataset.model_validate(options)


def test_random_source_gives_named_arrays_with_given_shapes_and_ranges() -> None:
    from expkit.data import load_splits

    dataset = dataset_node(
        source="random",
        name="random",
        train_samples=50,
        test_samples=10,
        inputs={
            "text": {"shape": [7], "dtype": "int32", "low": 1, "high": 5},
            "image": {"shape": [4, 4, 3], "dtype": "uint8", "high": 256},
        },
        targets={"score": {"low": -1.0, "high": 1.0}},
        validation={"holdout": 10},
    )
    splits = load_splits(dataset, data_dir=None, seed=3)
    assert splits.x_train["text"].shape == (40, 7) and splits.x_val["text"].shape == (10, 7)
    assert splits.x_test["image"].shape == (10, 4, 4, 3)
    assert splits.x_train["text"].min() >= 1 and splits.x_train["text"].max() <= 4 and splits.x_train["text"].dtype == np.int32
    assert splits.x_train["image"].dtype == np.uint8 and splits.y_train["score"].shape == (40,)
    assert splits.y_train["score"].min() >= -1 and splits.y_train["score"].max() < 1
    again = load_splits(dataset, data_dir=None, seed=3)
    assert again.fingerprint == splits.fingerprint and np.array_equal(again.x_train["text"], splits.x_train["text"])


def test_npz_source_maps_file_arrays_and_preprocesses_each_by_name(tmp_path: Path) -> None:
    from expkit.data import load_splits
    from expkit.training.batches import ArrayBatches

    rng = np.random.default_rng(0)
    arrays = {
        "pix_train": rng.integers(0, 256, (30, 5), dtype=np.uint8),
        "pix_test": rng.integers(0, 256, (9, 5), dtype=np.uint8),
        "meta_train": rng.normal(size=(30, 2)),
        "meta_test": rng.normal(size=(9, 2)),
        "y_train": rng.integers(0, 3, 30),
        "y_test": rng.integers(0, 3, 9),
    }
    np.savez(tmp_path / "mine.npz", **arrays)
    dataset = dataset_node(
        source="npz",
        name="mine",
        path=str(tmp_path / "mine.npz"),
        inputs={"pixels": "pix", "meta": "meta"},
        targets={"kind": "y"},
        preprocess={"meta": [{"op": "standardize"}], "kind": [{"op": "one_hot", "num_classes": 3}]},
    )
    splits = load_splits(dataset, data_dir=None, seed=0)
    assert splits.x_train["pixels"].dtype == np.uint8  # compact storage is kept ...
    assert np.allclose(splits.x_train["meta"].mean(axis=0), 0, atol=1e-6)
    assert splits.y_test["kind"].shape == (9, 3)
    x, y = ArrayBatches(splits.x_train, splits.y_train, 8)[0]
    assert x["pixels"].dtype == np.float32 and np.array_equal(x["pixels"], arrays["pix_train"][:8])  # ... and cast per batch
    assert y["kind"].shape == (8, 3)


def test_npz_source_options_are_validated(tmp_path: Path) -> None:
    cfg = small_image_config(tmp_path, [{"type": "Dense", "units": 1, "activation": "sigmoid"}])
    cfg["dataset"] = {"source": "npz", "name": "mine", "path": "x.npz", "inputs": {"a": "a"}, "target": {"y": "y"}}
    with pytest.raises(ExpkitError) as info:
        validate_config(cfg)
    message = str(info.value)
    assert "dataset.target: unknown key (did you mean 'targets'?)" in message and "dataset.targets: required key is missing" in message


# --- config tree: a preset with its own model starts clean --------------------------------------------


def test_preset_with_own_model_does_not_inherit_mlp_keys(tmp_path: Path) -> None:
    cfg = compose("residual", tmp_path)
    assert "units" in cfg.model and cfg.model.layers  # composed on top of the default model/mlp ...
    config = validate_config(cfg)
    assert "units" not in cfg.model and "layers" not in cfg.model and "loss" not in cfg.model  # ... and cleaned
    assert config.model.layers == [] and config.model.is_graph
    assert "units" not in validate_config(compose("separable_conv", tmp_path)).model.model_extra
    # A hyperparameter the user set (not the inherited value) is still flagged when nothing uses it.
    with pytest.raises(ExpkitError, match=r"model\.units: unknown key"):
        validate_config(compose("separable_conv", tmp_path, "model.units=128"))


# --- bad graphs: exit 2, no traceback, the node named, fast ------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["+model.nodes.1.in=text_embeding"], "model.nodes.text_encoding.in: unknown tensor 'text_embeding' (did you mean 'text_embed"),
        (["model.nodes.0.in=text_encoding"], "model.nodes.text_embedding.in: cycle: text_embedding -> text_encoding -> text_embedding"),
        (["~model.nodes.1.units", "+model.nodes.1.unit=32"], "model.nodes.text_encoding.unit: LSTM has no argument 'unit' (did you mean"),
        (["~model.outputs.answer.loss"], "model.outputs.answer.loss: every output needs a loss"),
    ],
    ids=["dangling", "cycle", "kwarg", "no-loss"],
)
def test_bad_graph_fails_fast_naming_the_node(workdir: Path, overrides: list[str], expected: str) -> None:
    done = run_inprocess("validate", "+experiment=multi_input", *overrides, cwd=workdir)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr and "Traceback" not in done.stderr
    assert "tensorflow" not in done.stderr.lower()  # failed before TensorFlow was imported (its start-up logs are absent)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["model.nodes.2.in=text"], "model.inputs.question: input is not used by any node or output"),
        (["model.nodes.4.type=Concatenat"], "model.nodes.both.type: unknown layer 'Concatenat' (did you mean 'Concatenate'?)"),
        (
            ["+model.nodes.1.layer=encoder", "~model.nodes.1.type", "~model.nodes.1.units"],
            "model.nodes.text_encoding.layer: unknown shared layer 'encoder' (known: none)",
        ),
        (["model.nodes.3.name=text"], "model.nodes.text.name: 'text' is already an input name"),
        (["+model.outputs.answer.loss_weight=-1"], "model.outputs.answer.loss_weight: must be a number >= 0"),
    ],
    ids=["unused-input", "type", "shared", "name-clash", "weight"],
)
def test_more_graph_mistakes_name_the_node(tmp_path: Path, overrides: list[str], expected: str) -> None:
    with pytest.raises(ExpkitError) as info:
        validate_config(compose("multi_input", tmp_path, *overrides))
    assert expected in str(info.value)


def test_block_mistakes_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ExpkitError) as info:
        validate_config(compose("residual", tmp_path, "+model.nodes.1.filter=3", "model.nodes.2.block=residul"))
    message = str(info.value)
    assert "model.nodes.res1.filter: block 'residual' has no parameter 'filter' (did you mean 'filters'?)" in message
    assert "model.nodes.res2.block: unknown block 'residul' (did you mean 'residual'?)" in message


def test_loss_must_fit_each_output(tmp_path: Path) -> None:
    cfg = compose("multi_output", tmp_path, "model.outputs.gender.loss=sparse_categorical_crossentropy")
    with pytest.raises(ExpkitError, match=r"model\.outputs\.gender\.loss: sparse_categorical_crossentropy needs one output unit per class"):
        validate_config(cfg)


# --- through the CLI --------------------------------------------------------------------------------


@pytest.mark.slow
def test_three_headed_model_trains_and_logs_one_loss_per_head(workdir: Path) -> None:
    args = ("+experiment=multi_output", "dataset.train_samples=64", "dataset.test_samples=16", "dataset.validation.holdout=16")
    done = run_inprocess("train", *args, "trainer.verbose=0", "tracking.tensorboard.enabled=false", cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no architecture diagram" in done.stderr or "model.png" in str(list(workdir.rglob("model.png")))
    (run,) = mlflow_runs(workdir, "multi_output")
    assert run.info.status == "FINISHED"
    import mlflow
    from mlflow.models import Model

    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    logged = client.get_logged_model(run.data.tags["model_uri"].removeprefix("models:/")).artifact_location
    signature = Model.load(logged.removeprefix("file://")).signature  # the named input, and one named output per head
    assert signature.inputs.input_names() == ["posts"]
    assert {s.name: s.shape for s in signature.outputs.inputs} == {"age": (-1, 1), "income": (-1, 10), "gender": (-1, 1)}
    for head in ("age", "income", "gender"):
        assert f"{head}_loss" in run.data.metrics and f"val_{head}_loss" in run.data.metrics and f"test_{head}_loss" in run.data.metrics
    assert {"income_accuracy", "gender_accuracy", "age_mae"} <= set(run.data.metrics)
    metrics = read_metrics(output_dirs(workdir)[0])
    assert metrics["epochs_run"] == 1
    # The total loss is the weighted sum of the head losses (0.25 / 1 / 10).
    final = metrics["final"]
    weighted = 0.25 * final["age_loss"] + final["income_loss"] + 10 * final["gender_loss"]
    assert final["loss"] == pytest.approx(weighted, rel=0.05)
    plots = {p.name for p in (output_dirs(workdir)[0] / "plots").iterdir()}
    assert {"confusion_matrix_income.png", "confusion_matrix_gender.png"} <= plots and "confusion_matrix_age.png" not in plots


def test_validate_build_prints_summary_and_parameter_count(workdir: Path) -> None:
    done = run_inprocess("validate", "--build", "+experiment=shared_lstm", cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    keras.utils.clear_session()
    expected = raw_shared_lstm().count_params()
    assert f"parameters: {expected:,} ({expected:,} trainable)" in done.stdout
    assert "encoder" in done.stdout
    assert not list(workdir.rglob("metrics.json"))  # nothing was trained


def test_inline_block_twice_and_a_graph_on_uint8_trains_in_process(tmp_path: Path) -> None:
    from expkit.data import load_splits
    from expkit.training.runner import train_and_evaluate

    cfg = small_image_config(tmp_path, [])
    cfg["dataset"]["inputs"]["tokens"] = {"shape": [5], "dtype": "int32", "high": 20}
    cfg["trainer"] = {"epochs": 1, "batch_size": 4, "verbose": 0}
    cfg["model"] = {
        "inputs": {"image": {}, "tokens": {}},
        "blocks": {"mlp": {"params": {"units": 8}, "nodes": [{"name": "d1", "type": "Dense", "units": "$units", "activation": "relu"}]}},
        "nodes": [
            {"name": "flat", "in": "image", "type": "Flatten"},
            {"name": "a", "block": "mlp"},
            {"name": "b", "block": "mlp"},
            {"name": "emb", "in": "tokens", "type": "Embedding", "input_dim": 20, "output_dim": 3},
            {"name": "pooled", "type": "GlobalAveragePooling1D"},
            {"name": "both", "in": ["b", "pooled"], "type": "Concatenate"},
        ],
        "outputs": {"label": {"type": "Dense", "units": 1, "activation": "sigmoid", "loss": "binary_crossentropy"}},
    }
    config = validate_config(cfg)
    splits = load_splits(config.dataset, data_dir=None, seed=0)
    assert splits.x_train["image"].dtype == np.uint8
    outcome = train_and_evaluate(config, splits, tmp_path / "out")
    model = outcome.model
    assert model.get_layer("a_d1") is not model.get_layer("b_d1")
    assert model.get_layer("a_d1").kernel.shape == (32 * 32 * 3, 8) and model.get_layer("b_d1").kernel.shape == (8, 8)
    assert len(outcome.history["loss"]) == 1 and "test_loss" in outcome.test_metrics
