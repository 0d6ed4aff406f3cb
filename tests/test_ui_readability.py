"""What the MLflow UI and the plots show at a glance (issue 27), in-process: metric values stored as the decimals Keras
computed (not float32 noise) without changing any comparison, plot titles that fit their figure, whole-epoch ticks for a
1-epoch run, epochs counted from 0 on the PNGs as in MLflow's charts, run names that lead with short swept values, the
table view's columns, and experiments marked as model training. The browser side is in test_ui_glance.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from expkit.tracking import plots
from expkit.tracking.epochs import EpochLogger
from expkit.tracking.parent import ParentRun, best_child
from expkit.tracking.recorder import ChildRun
from expkit.tracking.run import log_metrics
from expkit.tracking.values import readable
from tests.fabricate import FakeStore, add_run, make_store

LONG_NAME = "learning_rate=0.0001 units=512 mnist_dense max_train_samples=1200 holdout=200 max_test_samples=500 epochs=2 seed=3"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FakeStore:
    return make_store(tmp_path_factory.mktemp("store"), "readability")


# ---------------------------------------------------------------- values


def test_float32_values_are_stored_as_their_shortest_decimal_and_keep_their_order() -> None:
    assert readable(0.9172000288963318) == 0.9172  # np.float32(0.9172) as a Python float
    assert readable(0.0010000000474974513) == 0.001 and readable(float(np.float32(1.8618534))) == 1.8618534
    assert readable(0.16878855100000578) == 0.16878855100000578  # not a float32 (a time, a float64 mean): unchanged
    assert np.isnan(readable(float("nan"))) and readable(float("inf")) == float("inf")
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(size=50_000), rng.uniform(0, 1e-3, 50_000), np.nextafter(np.float32(0.5), 1) + np.zeros(3)])
    singles = values.astype(np.float32).astype(np.float64)  # what Keras' logs hold
    shown = np.array([readable(v) for v in singles])
    assert np.array_equal(shown.astype(np.float32), singles.astype(np.float32))  # the same float32 values
    order = np.argsort(singles, kind="stable")
    assert np.array_equal(np.argsort(shown, kind="stable"), order)  # every comparison gives the same answer
    assert np.array_equal(np.diff(shown[order]) > 0, np.diff(singles[order]) > 0)  # ties stay ties, nothing new ties


def test_logged_metrics_read_as_keras_computed_them(store: FakeStore) -> None:
    run_id = store.client.create_run(store.experiment_id).info.run_id
    log_metrics(store.client, run_id, {"test_accuracy": float(np.float32(0.9172)), "baseline_accuracy": 0.1018, "n": 3})
    assert store.client.get_run(run_id).data.metrics == {"test_accuracy": 0.9172, "baseline_accuracy": 0.1018, "n": 3.0}

    import keras

    from expkit.models.builder import build_model
    from expkit.training.compile import compile_model

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 3)).astype(np.float32), rng.integers(0, 2, 40)
    model = build_model([{"type": "Dense", "units": 2, "activation": "softmax"}], (3,))
    compile_model(model, {"type": "SGD", "learning_rate": 0.01}, "sparse_categorical_crossentropy", ["accuracy"])
    keras.utils.set_random_seed(1)
    history = model.fit(x, y, epochs=2, batch_size=10, verbose=0, callbacks=[EpochLogger(ChildRun(store.client, run_id))]).history
    for key in ("loss", "accuracy"):
        logged = [m.value for m in sorted(store.client.get_metric_history(run_id, key), key=lambda m: m.step)]
        assert logged == [readable(v) for v in history[key]]
        assert all(len(repr(v)) <= 11 for v in logged), logged  # at most float32's 9 significant digits, not 17
    rate = store.client.get_run(run_id).data.metrics["learning_rate"]
    assert rate == 0.01, rate  # not 0.009999999776482582
    assert all(round(m.value, 3) == m.value for m in store.client.get_metric_history(run_id, "epoch_time_s"))


def test_the_sweep_picks_the_same_best_child_from_readable_values(store: FakeStore) -> None:
    """Objectives that differ only past float32's shortest decimal still rank as computed."""
    from expkit.selection.objective import Objective

    parent = store.client.create_run(store.experiment_id, tags={"expkit.sweep": "parent"}).info.run_id
    close = [float(np.float32(0.2)), float(np.nextafter(np.float32(0.2), np.float32(1))), float(np.float32(0.25))]
    ids = []
    for i, value in enumerate(close):
        run = add_run(store, name=f"child {i}", params={}, metrics={}, tags={"mlflow.parentRunId": parent})
        log_metrics(store.client, run.info.run_id, {"objective": value, "val_loss": value, "test_accuracy": 0.9 - i / 10})
        ids.append(run.info.run_id)
    children = [store.client.get_run(i) for i in ids]
    assert [r.data.metrics["objective"] for r in children] == [0.2, 0.20000002, 0.25]
    best = best_child(children, Objective(metric="val_loss", mode="min"))
    assert best is not None and best.info.run_id == ids[0]
    ParentRun(store.client, parent).log_best(Objective(metric="val_loss", mode="min"))
    assert store.client.get_run(parent).data.metrics["best/objective"] == 0.2


# ---------------------------------------------------------------- plots


def draw(history: dict[str, list[float]], run_name: str = "") -> tuple[object, object, str]:
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    title = plots.draw_curve(ax, history, "loss", run_name=run_name)
    fig.tight_layout()
    fig.canvas.draw()
    return fig, ax, title


def test_a_long_run_name_fits_in_the_plot_title(tmp_path: Path) -> None:
    fig, ax, title = draw({"loss": [1.0, 0.5, 0.4], "val_loss": [1.1, 0.7, 0.6]}, LONG_NAME)
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    box = ax.title.get_window_extent(renderer)  # type: ignore[attr-defined]
    width = fig.get_figwidth() * fig.dpi  # type: ignore[attr-defined]
    plots.pyplot().close(fig)
    assert box.x0 >= 0 and box.x1 <= width, (box, width, title)
    lines = title.splitlines()
    assert lines[0] == "loss: training and validation" and len(lines) <= 1 + plots.TITLE_LINES
    assert lines[1].startswith("learning_rate=0.0001 units=512")  # what tells runs apart stays in
    # The confusion matrix of a 10-class model, same name.
    path = plots.confusion_matrix_png(np.eye(10, dtype=int) * 5, tmp_path / "cm.png", LONG_NAME)
    assert path.is_file()


def test_a_one_epoch_run_gets_a_whole_epoch_tick_and_epochs_count_from_0_as_in_mlflow() -> None:
    fig, ax, _ = draw({"loss": [0.7], "val_loss": [0.8]})
    low, high = ax.get_xlim()  # type: ignore[attr-defined]
    ticks = [t for t in ax.get_xticks() if low <= t <= high]  # type: ignore[attr-defined]
    plots.pyplot().close(fig)
    assert ticks == [0.0], ticks  # MLflow logs a 1-epoch run's metrics at step 0
    fig, ax, _ = draw({"loss": [1.0, 0.6, 0.5]})
    low, high = ax.get_xlim()  # type: ignore[attr-defined]
    ticks = [t for t in ax.get_xticks() if low <= t <= high]  # type: ignore[attr-defined]
    points = list(ax.get_lines()[0].get_xdata())  # type: ignore[attr-defined]
    label = ax.get_xlabel()  # type: ignore[attr-defined]
    plots.pyplot().close(fig)
    assert ticks == [0.0, 1.0, 2.0] and points == [0, 1, 2]  # the steps EpochLogger logs these epochs at
    assert "from 0" in label
    fig, ax, _ = draw({"loss": list(np.linspace(1, 0.1, 40))})
    low, high = ax.get_xlim()  # type: ignore[attr-defined]
    ticks = [t for t in ax.get_xticks() if low <= t <= high]  # type: ignore[attr-defined]
    plots.pyplot().close(fig)
    assert 3 <= len(ticks) <= 12 and all(float(t).is_integer() for t in ticks), ticks


# ---------------------------------------------------------------- names and the table view


def test_run_names_lead_with_swept_values_under_short_keys() -> None:
    from expkit.app import run_name

    overrides = ["+experiment=mnist_dense", "optimizer.learning_rate=0.001", "dataset.max_train_samples=1200", "seed=2"]
    swept = {"optimizer.learning_rate=0.001", "seed=2"}
    assert run_name("mnist_dense", overrides, swept) == "lr=0.001 seed=2 mnist_dense train_n=1200"
    assert run_name("mnist_dense", ["trainer.batch_size=64", "model.units=512"]) == "mnist_dense bs=64 units=512"


def test_table_view_puts_the_objectives_first_and_widens_the_name_column(store: FakeStore) -> None:
    from expkit.tracking.store import RUN_NAME_COLUMN, table_view

    view = json.loads(table_view(None, ["test_accuracy", "objective"], ["optimizer.learning_rate"]))
    view = json.loads(table_view(json.dumps(view), ["best/objective"], []))  # what a sweep's end adds
    assert view["selectedColumns"] == [
        "metrics.`best/objective`",
        "metrics.`objective`",
        "metrics.`test_accuracy`",
        "params.`optimizer.learning_rate`",
        "attributes.`Dataset`",
        "attributes.`Models`",
    ]
    order = view["columnOrder"]
    assert order[:2] == [RUN_NAME_COLUMN, "metrics.`best/objective`"] and order.index("attributes.`Dataset`") > order.index(
        "params.`optimizer.learning_rate`"
    )
    assert view["columnWidths"][RUN_NAME_COLUMN] > 190  # MLflow's default cuts `learning_rate=0...`


def test_new_and_older_experiments_are_marked_as_model_training(tmp_path: Path) -> None:
    from expkit.tracking.store import EXPERIMENT_KIND_TAG, TRAINING_KIND, ensure_experiment

    fresh = make_store(tmp_path, "fresh")
    assert fresh.client.get_experiment(fresh.experiment_id).tags.get(EXPERIMENT_KIND_TAG) == TRAINING_KIND
    older = fresh.client.create_experiment("older")  # as expkit made them before, without the tag
    assert ensure_experiment(fresh.uri, "older", str(tmp_path / "art")) == older
    assert fresh.client.get_experiment(older).tags.get(EXPERIMENT_KIND_TAG) == TRAINING_KIND
