"""In-process unit tests of the pieces that decide whether training is correct: the per-epoch shuffle order,
optimizer / schedule / loss / metric resolution, callback paths, the model builder's errors and check_labels."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from expkit.data.pipeline import Splits
from expkit.errors import ExpkitError
from expkit.models.builder import build_model
from expkit.training.batches import ArrayBatches
from expkit.training.callbacks import make_callbacks, resolve_paths
from expkit.training.compile import compile_model, make_optimizer, resolve_named
from expkit.training.runner import check_labels

# --- the per-epoch shuffle order (training/batches.py) ------------------------------------------


def epoch_order(batches: ArrayBatches) -> np.ndarray:
    """The sample ids in the order one epoch of `batches` feeds them (x holds the ids)."""
    return np.concatenate([np.asarray(batches[i][0]) for i in range(len(batches))]).astype(int)


def id_batches(n: int = 40, **kwargs: object) -> ArrayBatches:
    ids = np.arange(n)
    return ArrayBatches(ids, ids * 10, 7, **kwargs)  # type: ignore[arg-type]


def test_shuffle_order_changes_every_epoch_and_keeps_pairs() -> None:
    batches = id_batches(shuffle=True, seed=3)
    orders = []
    for _ in range(4):
        orders.append(epoch_order(batches))
        batches.on_epoch_end()
    for order in orders:
        assert sorted(order) == list(range(40))  # a permutation: nothing dropped or repeated
    assert len({tuple(o) for o in orders}) == 4, "every epoch must see its own order"
    assert all(not np.array_equal(o, np.arange(40)) for o in orders)
    xb, yb = batches[2]
    np.testing.assert_array_equal(yb, xb * 10)  # features stay paired with their labels


def test_shuffle_order_is_a_function_of_seed_and_epoch() -> None:
    first, again = id_batches(shuffle=True, seed=3), id_batches(shuffle=True, seed=3)
    np.testing.assert_array_equal(epoch_order(first), epoch_order(again))
    assert not np.array_equal(epoch_order(first), epoch_order(id_batches(shuffle=True, seed=4)))
    # Starting at epoch=k (a resumed run) gives the order an uninterrupted run has after k epoch ends.
    for _ in range(3):
        first.on_epoch_end()
    resumed = id_batches(shuffle=True, seed=3, epoch=3)
    np.testing.assert_array_equal(epoch_order(resumed), epoch_order(first))
    resumed.on_epoch_end(), first.on_epoch_end()
    np.testing.assert_array_equal(epoch_order(resumed), epoch_order(first))


def test_no_shuffle_keeps_file_order_and_casts_compact_dtypes() -> None:
    batches = ArrayBatches(np.arange(10, dtype=np.uint8), np.arange(10, dtype=np.int64), 4)
    np.testing.assert_array_equal(epoch_order(batches), np.arange(10))
    batches.on_epoch_end()
    np.testing.assert_array_equal(epoch_order(batches), np.arange(10))
    xb, yb = batches[0]
    assert xb.dtype == np.float32 and yb.dtype == np.int64 and len(batches) == 3


class RecordingBatches(ArrayBatches):
    """ArrayBatches that remember which sample ids each training epoch of fit() read, batch by batch."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fit_epoch: int | None = None  # set by EpochMarker; None while Keras peeks at the data before epoch 0
        self.read: dict[int, dict[int, list[int]]] = {}

    def __getitem__(self, index: int) -> object:
        xb, yb = super().__getitem__(index)
        if self.fit_epoch is not None:
            self.read.setdefault(self.fit_epoch, {})[index] = np.asarray(xb[:, 0]).astype(int).tolist()
        return xb, yb

    def order(self, epoch: int) -> list[int]:
        return [i for _, ids in sorted(self.read[epoch].items()) for i in ids]


class EpochMarker(keras.callbacks.Callback):
    def __init__(self, batches: RecordingBatches) -> None:
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.batches.fit_epoch = epoch


def fit_orders(initial_epoch: int, epochs: int) -> dict[int, list[int]]:
    """The sample order of every epoch fit() trains, as the trainer sets it up (ArrayBatches starting at initial_epoch)."""
    ids = np.arange(24, dtype=np.float32).reshape(-1, 1)
    batches = RecordingBatches(ids, np.zeros((24, 1), np.float32), 6, shuffle=True, seed=5, epoch=initial_epoch)
    model = build_model([{"type": "Dense", "units": 1}], (1,))
    model.compile(optimizer="sgd", loss="mse")
    model.fit(batches, epochs=epochs, initial_epoch=initial_epoch, verbose=0, shuffle=False, callbacks=[EpochMarker(batches)])
    return {e: batches.order(e) for e in range(initial_epoch, epochs)}


def test_fit_sees_a_new_order_every_epoch_and_a_resumed_fit_the_same_orders() -> None:
    straight = fit_orders(0, 3)
    assert all(sorted(order) == list(range(24)) for order in straight.values())
    assert len({tuple(order) for order in straight.values()}) == 3, "fit() must see a different order in every epoch"
    resumed = fit_orders(1, 3)  # a run resumed after epoch 0
    assert resumed == {1: straight[1], 2: straight[2]}


# --- optimizer, schedule, loss and metric resolution (training/compile.py) ----------------------


@pytest.mark.parametrize(("name", "cls"), [("rmsprop", "RMSprop"), ("ADAM", "Adam"), ("Sgd", "SGD"), ("RMSprop", "RMSprop")])
def test_optimizer_names_resolve_case_insensitively_at_run_time(name: str, cls: str) -> None:
    optimizer = make_optimizer({"type": name, "learning_rate": 0.02})
    assert type(optimizer) is getattr(keras.optimizers, cls)
    assert float(optimizer.learning_rate) == pytest.approx(0.02)


def test_optimizer_kwargs_and_unknown_names() -> None:
    sgd = make_optimizer({"type": "SGD", "learning_rate": 0.1, "momentum": 0.9})
    assert sgd.get_config()["momentum"] == pytest.approx(0.9)
    with pytest.raises(ExpkitError, match=r"optimizer\.type: unknown optimizer 'rmsprob'") as info:
        make_optimizer({"type": "rmsprob"})
    assert "did you mean 'RMSprop'" in str(info.value)
    with pytest.raises(ExpkitError, match=r"^optimizer: cannot create SGD"):
        make_optimizer({"type": "SGD", "momentun": 0.9})


def test_learning_rate_schedule_dict() -> None:
    """The README's form: optimizer.learning_rate: {type: ExponentialDecay, ...}."""
    spec = {"type": "ExponentialDecay", "initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5}
    optimizer = make_optimizer({"type": "RMSprop", "learning_rate": spec})
    lr = optimizer.get_config()["learning_rate"]
    assert lr["class_name"] == "ExponentialDecay"
    assert lr["config"]["initial_learning_rate"] == 0.1 and lr["config"]["decay_steps"] == 10 and lr["config"]["decay_rate"] == 0.5
    assert float(optimizer.learning_rate) == pytest.approx(0.1)  # iteration 0
    with pytest.raises(ExpkitError, match=r"optimizer\.learning_rate\.type: unknown learning-rate schedule 'ExponentalDecay'") as info:
        make_optimizer({"type": "RMSprop", "learning_rate": {**spec, "type": "ExponentalDecay"}})
    assert "did you mean 'ExponentialDecay'" in str(info.value)


def test_loss_and_metric_dict_forms() -> None:
    assert resolve_named("mse", keras.losses, "model.loss") == "mse"
    loss = resolve_named({"type": "CategoricalCrossentropy", "label_smoothing": 0.2}, keras.losses, "model.loss")
    assert isinstance(loss, keras.losses.CategoricalCrossentropy) and loss.get_config()["label_smoothing"] == 0.2
    huber = resolve_named({"_target_": "keras.losses.Huber", "delta": 2.5}, keras.losses, "model.loss")
    assert isinstance(huber, keras.losses.Huber)
    assert float(huber(np.array([[0.0]]), np.array([[5.0]]))) == pytest.approx(2.5 * (5 - 2.5 / 2))  # linear beyond delta=2.5
    top3 = resolve_named({"type": "SparseTopKCategoricalAccuracy", "k": 3, "name": "top3"}, keras.metrics, "model.metrics.1")
    assert isinstance(top3, keras.metrics.SparseTopKCategoricalAccuracy) and top3.get_config()["k"] == 3
    with pytest.raises(ExpkitError, match=r"model\.loss\.type: unknown loss 'Hubber'"):
        resolve_named({"type": "Hubber"}, keras.losses, "model.loss")
    with pytest.raises(ExpkitError, match=r"model\.metrics\.0\.type: unknown metric 'Acuracy'"):
        resolve_named({"type": "Acuracy"}, keras.metrics, "model.metrics.0")


def test_compile_model_with_dict_forms_trains_and_reports_the_metric() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(32, 4)).astype(np.float32), rng.integers(0, 5, 32)
    model = build_model([{"type": "Dense", "units": 5, "activation": "softmax"}], (4,))
    compile_model(
        model,
        {"type": "sgd", "learning_rate": {"type": "ExponentialDecay", "initial_learning_rate": 0.1, "decay_steps": 1, "decay_rate": 0.5}},
        {"type": "SparseCategoricalCrossentropy"},
        ["accuracy", {"type": "SparseTopKCategoricalAccuracy", "k": 5, "name": "top5"}],
    )
    history = model.fit(x, y, epochs=1, batch_size=8, verbose=0).history
    assert history["top5"] == [1.0]  # all 5 classes are in the top 5: the metric is the configured one, k=5
    assert float(model.optimizer.learning_rate) == pytest.approx(0.1 * 0.5**4)  # 4 steps of the schedule


# --- callback file paths (training/callbacks.py) ---------------------------------------------------


def test_relative_callback_paths_go_into_the_run_folder(tmp_path: Path) -> None:
    spec = {"type": "CSVLogger", "filename": "logs/history.csv", "separator": ";"}
    resolved = resolve_paths(spec, tmp_path)
    assert resolved == {"type": "CSVLogger", "filename": str(tmp_path / "logs" / "history.csv"), "separator": ";"}
    assert spec["filename"] == "logs/history.csv"  # the config is not modified
    absolute = str(tmp_path.parent / "elsewhere.keras")
    for arg in ("filepath", "log_dir", "backup_dir"):
        assert resolve_paths({"type": "X", arg: "sub/x"}, tmp_path)[arg] == str(tmp_path / "sub" / "x")
        assert resolve_paths({"type": "X", arg: absolute}, tmp_path)[arg] == absolute
    assert resolve_paths({"type": "X", "monitor": "val_loss"}, tmp_path) == {"type": "X", "monitor": "val_loss"}


def test_make_callbacks_builds_named_callbacks_with_resolved_paths(tmp_path: Path) -> None:
    specs = {"csv": {"type": "CSVLogger", "filename": "history.csv"}, "stop": {"type": "EarlyStopping", "patience": 2}}
    csv, stop = make_callbacks(specs, tmp_path)
    assert isinstance(csv, keras.callbacks.CSVLogger) and csv.filename == str(tmp_path / "history.csv")
    assert isinstance(stop, keras.callbacks.EarlyStopping) and stop.patience == 2
    with pytest.raises(ExpkitError, match=r"callbacks\.csv\.type: unknown callback 'CSVLoger'"):
        make_callbacks({"csv": {"type": "CSVLoger"}}, tmp_path)


# --- the model builder's errors (models/builder.py) ---------------------------------------------


def test_build_model_applies_layers_in_order() -> None:
    model = build_model([{"type": "Dense", "units": 8, "activation": "relu"}, {"type": "Dense", "units": 3}], (5,), name="m")
    assert model.name == "m" and model.output_shape == (None, 3)
    assert model.count_params() == 5 * 8 + 8 + 8 * 3 + 3


def test_build_model_rejects_a_target_that_is_not_a_layer() -> None:
    with pytest.raises(ExpkitError) as info:
        build_model([{"type": "Dense", "units": 4}, {"_target_": "collections.OrderedDict"}], (3,))
    assert str(info.value) == "model.layers.1: OrderedDict is not a keras Layer or Model"


def test_build_model_names_the_layer_that_cannot_take_its_input() -> None:
    with pytest.raises(ExpkitError) as info:
        build_model([{"type": "Dense", "units": 4}, {"type": "Conv2D", "filters": 2, "kernel_size": 3}], (6,))
    message = str(info.value)
    assert message.startswith("model.layers.1: Conv2D cannot take input of shape (None, 4)")
    assert "hint: check the layer order and `in`, or add a Flatten/Reshape layer" in message


# --- run-time label checks (training/runner.py check_labels) ------------------------------------


@pytest.fixture(scope="module")
def ten_way_model() -> keras.Model:
    return build_model([{"type": "Dense", "units": 10, "activation": "softmax"}], (3,))


def splits_with_labels(y: np.ndarray) -> Splits:
    x = np.zeros((len(y), 3), np.float32)
    return Splits(x, y, x, y)


@pytest.mark.parametrize(
    ("loss", "y"),
    [
        ("sparse_categorical_crossentropy", np.arange(10)),
        ("sparse_categorical_crossentropy", np.arange(10).reshape(-1, 1)),
        ({"type": "SparseCategoricalCrossentropy"}, np.arange(10)),
        ("categorical_crossentropy", np.eye(10)),
        ("mse", np.arange(10)),  # not a classification check
    ],
)
def test_check_labels_accepts_labels_that_fit(ten_way_model: keras.Model, loss: object, y: np.ndarray) -> None:
    check_labels(ten_way_model, loss, splits_with_labels(y))


@pytest.mark.parametrize(
    ("loss", "y", "expected"),
    [
        ("sparse_categorical_crossentropy", np.eye(10), "model.loss: sparse_categorical_crossentropy needs integer labels"),
        ({"type": "SparseCategoricalCrossentropy"}, np.eye(10), "model.loss: SparseCategoricalCrossentropy needs integer labels"),
        ("sparse_categorical_crossentropy", np.array([0, 3, 12]), "model.layers: labels go up to 12 but the last layer has 10 units"),
        ("categorical_crossentropy", np.eye(12), "model.layers: the model outputs 10 values per sample but labels have 12"),
    ],
)
def test_check_labels_rejects_labels_that_do_not_fit(ten_way_model: keras.Model, loss: object, y: np.ndarray, expected: str) -> None:
    with pytest.raises(ExpkitError) as info:
        check_labels(ten_way_model, loss, splits_with_labels(y))
    assert str(info.value).startswith(expected)
    assert "hint:" in str(info.value)


# --- test confusion matrices counted during evaluate (training/confusion.py) --------------------


def reference_counts(true: np.ndarray, predicted: np.ndarray, n: int) -> np.ndarray:
    counts = np.zeros((n, n), dtype=np.int64)
    np.add.at(counts, (true, predicted), 1)
    return counts


@pytest.mark.parametrize(
    ("units", "activation", "loss", "labels"),
    [
        (4, "softmax", "sparse_categorical_crossentropy", "integers"),
        pytest.param(4, "softmax", "categorical_crossentropy", "one_hot", marks=pytest.mark.slow),
        pytest.param(1, "sigmoid", "binary_crossentropy", "integers", marks=pytest.mark.slow),
        (1, "tanh", "hinge", "signs"),  # quick: argmax over classes, and a threshold on one unit
    ],
)
def test_confusion_tally_matches_the_predictions(units: int, activation: str, loss: str, labels: str) -> None:
    from expkit.training.confusion import confusion_tally

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype("float32")
    classes = rng.integers(0, max(units, 2), 300)
    y = {"integers": classes, "one_hot": np.eye(max(units, 2))[classes], "signs": 2.0 * classes - 1}[labels]
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(units, activation=activation)])
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"], steps_per_execution=3)
    model.evaluate(x, y, verbose=0)  # a test function traced without the tally, as fit's validation leaves one
    with confusion_tally(model, {"": loss}) as counts:
        tallied = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    outputs = model.predict(x, verbose=0)
    threshold = 0.0 if loss == "hinge" else 0.5
    predicted = outputs.argmax(axis=1) if units > 1 else (outputs.reshape(-1) > threshold).astype(int)
    expected = reference_counts(classes, predicted, max(units, 2))
    np.testing.assert_array_equal(counts[""], expected)
    assert counts[""].sum() == 300
    assert "compute_metrics" not in vars(model)  # the wrapper is gone after the block
    assert model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True) == pytest.approx(tallied)


def test_confusion_tally_counts_each_classification_head_of_a_graph_model() -> None:
    from expkit.training.confusion import classifier_heads, confusion_tally

    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5)).astype("float32")
    topic, flag, score = rng.integers(0, 3, 200), rng.integers(0, 2, 200), rng.normal(size=200)
    inputs = keras.Input((5,), name="x")
    outputs = {
        "topic": keras.layers.Dense(3, activation="softmax", name="topic")(inputs),
        "flag": keras.layers.Dense(1, activation="sigmoid", name="flag")(inputs),
        "score": keras.layers.Dense(1, name="score")(inputs),
    }
    model = keras.Model(inputs, outputs)
    losses = {"topic": "sparse_categorical_crossentropy", "flag": "binary_crossentropy", "score": "mse"}
    model.compile(optimizer="adam", loss=losses)
    y = {"topic": topic, "flag": flag, "score": score}
    heads = classifier_heads(losses)
    assert set(heads) == {"topic", "flag"}
    with confusion_tally(model, heads) as counts:
        model.evaluate(x, y, batch_size=64, verbose=0)
    predicted = model.predict(x, verbose=0)
    np.testing.assert_array_equal(counts["topic"], reference_counts(topic, predicted["topic"].argmax(axis=1), 3))
    np.testing.assert_array_equal(counts["flag"], reference_counts(flag, (predicted["flag"].reshape(-1) > 0.5).astype(int), 2))
    assert set(counts) == {"topic", "flag"}


def test_confusion_tally_counts_every_timestep_of_a_sequence_output() -> None:
    from expkit.training.confusion import confusion_tally

    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 5, 3)).astype("float32")
    y = rng.integers(0, 4, (64, 5))  # one class per timestep
    model = keras.Sequential([keras.Input((5, 3)), keras.layers.Dense(4, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with confusion_tally(model, {"": "sparse_categorical_crossentropy"}) as counts:
        model.evaluate(x, y, batch_size=16, verbose=0)
    predicted = model.predict(x, verbose=0).argmax(axis=-1)
    np.testing.assert_array_equal(counts[""], reference_counts(y.reshape(-1), predicted.reshape(-1), 4))
