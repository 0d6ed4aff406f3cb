"""Quick guards on what selection may look at (issue 25): each k-fold fold trains on exactly the rows it does not validate
on, ensemble weights are fitted on the validation split only, and the retrain phase trains exactly the best epoch count.

All in-process, real Keras and a real SQLite MLflow store, tiny data, seconds each. `tests/mutations.py` plants the bugs
these catch (kfold-*, ensemble-weights-*, retrain-*).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import compose

QUIET = ("tracking=none", "trainer.verbose=0", "tracking.tensorboard.enabled=false")


def array_file(path: Path, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> Path:
    """A Keras-layout npz (x_train, y_train, x_test, y_test) that `dataset=mnist dataset.path=...` reads as it is."""
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def regression_config(root: Path, data: Path, *overrides: str) -> Any:
    """A one-Dense-unit MSE regression on `data`, read without preprocessing (so every row keeps its identity)."""
    return compose(
        "dataset=mnist",
        f"dataset.path={data}",
        "dataset.preprocess.x=[]",
        "dataset.preprocess.y=[]",
        "model.loss=mse",
        "model.metrics=[]",
        "model.layers=[{type: Dense, units: 1}]",
        *QUIET,
        *overrides,
        root=root,
    )


# ---------------------------------------------------------------- k-fold: fold k never trains on its validation rows


def numbered_rows(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows that carry their own number: x[i] = (i, i % 7), y[i] = i (so the pairs can be checked too)."""
    ids = np.arange(n)
    return np.stack([ids, ids % 7], axis=1).astype(np.float32), ids.astype(np.float32)


def assert_folds_partition(folds: int, n: int, seen: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Per fold: training and validation rows are disjoint and together are all n training rows; each row validates once."""
    assert len(seen) == folds
    validated: list[int] = []
    for k, (train_ids, val_ids) in enumerate(seen, start=1):
        train, val = set(train_ids.tolist()), set(val_ids.tolist())
        assert len(train) == len(train_ids) and len(val) == len(val_ids), f"fold {k} holds a row twice"
        assert not train & val, f"fold {k} trains on {len(train & val)} of its own validation rows, e.g. {sorted(train & val)[:5]}"
        assert train | val == set(range(n)), f"fold {k} loses rows {sorted(set(range(n)) - train - val)[:5]}"
        assert len(val) == n // folds
        validated += val_ids.tolist()
    assert len(validated) == len(set(validated)), "a row is validated in two folds"


@pytest.mark.parametrize("folds", [2, 3, 5])
def test_each_fold_trains_on_exactly_the_rows_it_does_not_validate_on(tmp_path: Path, folds: int) -> None:
    from expkit.data import load_splits

    n = 53  # not a multiple of any fold count: the rows past the last full fold train in every fold
    x, y = numbered_rows(n)
    data = array_file(tmp_path / "rows.npz", x, y, x[:5], y[:5])
    config = regression_config(tmp_path, data, "dataset.validation.holdout=null", f"dataset.validation.folds={folds}")
    seen = []
    for k in range(folds):
        splits = load_splits(config.dataset, data_dir=None, seed=config.seed, fold=k)
        for xs, ys in ((splits.x_train, splits.y_train), (splits.x_val, splits.y_val)):
            np.testing.assert_array_equal(xs[:, 0], ys)  # each label stays with its row
            np.testing.assert_array_equal(xs[:, 1], xs[:, 0] % 7)
        seen.append((splits.x_train[:, 0].astype(int), splits.x_val[:, 0].astype(int)))
    assert_folds_partition(folds, n, seen)


def test_folds_of_named_arrays_partition_the_training_rows(tmp_path: Path) -> None:
    """The same for a source of named arrays (`random`): rows are told apart by their values."""
    from expkit.data import load_splits

    config = compose(
        "dataset=random",
        "+dataset.inputs={a: {shape: [3]}, b: {shape: [2]}}",
        "+dataset.targets={out: {}}",
        "dataset.train_samples=40",
        "dataset.test_samples=4",
        "dataset.validation.folds=4",
        "model.loss=mse",
        "model.layers=[{type: Dense, units: 1}]",
        *QUIET,
        root=tmp_path,
    )
    whole = load_splits(
        config.dataset.model_copy(update={"validation": type(config.dataset.validation)()}), data_dir=None, seed=config.seed
    )

    def row_keys(x: dict[str, np.ndarray], y: dict[str, np.ndarray]) -> list[bytes]:
        return [x["a"][i].tobytes() + x["b"][i].tobytes() + y["out"][i].tobytes() for i in range(len(y["out"]))]

    number = {key: i for i, key in enumerate(row_keys(whole.x_train, whole.y_train))}  # type: ignore[arg-type]
    assert len(number) == 40
    seen = []
    for k in range(4):
        splits = load_splits(config.dataset, data_dir=None, seed=config.seed, fold=k)
        seen.append(
            (
                np.array([number[key] for key in row_keys(splits.x_train, splits.y_train)]),  # type: ignore[arg-type]
                np.array([number[key] for key in row_keys(splits.x_val, splits.y_val)]),  # type: ignore[arg-type]
            )
        )
    assert_folds_partition(4, 40, seen)


def test_kfold_protocol_trains_each_fold_on_its_own_training_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the protocol: what each fold's real fit receives, recorded on the way in."""
    import expkit.training.runner as runner
    from expkit.experiment.protocols import Context, kfold
    from expkit.selection.objective import Objective

    n, folds = 24, 2
    x, y = numbered_rows(n)
    data = array_file(tmp_path / "rows.npz", x, y, x[:5], y[:5])
    config = regression_config(
        tmp_path, data, "dataset.validation.holdout=null", f"dataset.validation.folds={folds}", "trainer.epochs=1", "trainer.batch_size=8"
    )
    real = runner.train_and_evaluate
    seen: list[tuple[np.ndarray, np.ndarray]] = []

    def recording(config: Any, splits: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append((np.asarray(splits.x_train)[:, 0].astype(int), np.asarray(splits.x_val)[:, 0].astype(int)))
        return real(config, splits, *args, **kwargs)

    monkeypatch.setattr(runner, "train_and_evaluate", recording)
    monkeypatch.setattr(sys.modules[kfold.__module__], "train_and_evaluate", recording, raising=False)  # if imported at module level
    result = kfold(Context(config, tmp_path / "run", Objective.from_config(config.objective)))
    assert_folds_partition(folds, n, seen)
    assert sorted(v for _, val in seen for v in val.tolist()) == list(range(n))  # 24 rows, 2 folds: every row validates once
    assert np.isfinite(result.score)


# ---------------------------------------------------------------- ensemble: weights fitted on validation only


def fixed_member(kernel: list[float]) -> Any:
    """A real Keras model that predicts the weighted sum `kernel . x` (no bias, nothing trained)."""
    import keras

    model = keras.Sequential([keras.Input((len(kernel),)), keras.layers.Dense(1, use_bias=False)])
    model.layers[0].set_weights([np.asarray(kernel, dtype=np.float32).reshape(-1, 1)])
    model.compile(loss="mse")
    return model


def mixed_targets(x: np.ndarray, share: float) -> np.ndarray:
    """share * x0 + (1 - share) * x1: what member A (x0) and member B (x1) average to with weights (share, 1 - share)."""
    return (share * x[:, 0] + (1 - share) * x[:, 1]).astype(np.float32)


def write_members_data(path: Path, *, validation: float, train: float, test: float, seeds: tuple[int, int, int] = (0, 1, 2)) -> None:
    """300 training rows whose first 100 are the validation holdout, and 100 test rows; each part wants other weights.
    `seeds` draw the validation, the other training and the test rows."""
    draw = [np.random.default_rng(s).normal(size=(rows, 2)).astype(np.float32) for s, rows in zip(seeds, (100, 200, 100), strict=True)]
    x_val, x_rest, x_test = draw
    y_train = np.concatenate([mixed_targets(x_val, validation), mixed_targets(x_rest, train)])
    array_file(path, np.concatenate([x_val, x_rest]), y_train, x_test, mixed_targets(x_test, test))


def test_ensemble_weights_follow_the_validation_split_only(tmp_path: Path) -> None:
    """Two finished runs in a real SQLite store: member A predicts x0, member B x1. The validation rows are best
    averaged 0.8/0.2, the training rows 0.5/0.5 and the test rows 0.1/0.9, so the fitted weights show which split they saw."""
    from omegaconf import OmegaConf

    from expkit.stored.ensemble import ensemble

    data = tmp_path / "data.npz"
    write_members_data(data, validation=0.8, train=0.5, test=0.1)
    config = regression_config(tmp_path, data, "dataset.validation.holdout=100")
    from tests.fabricate import make_store

    store = make_store(tmp_path, "members")  # a new store as expkit creates it (seeded, not migrated)
    uri, client, experiment = store.uri, store.client, store.experiment_id
    members = []
    for name, kernel in (("a", [1.0, 0.0]), ("b", [0.0, 1.0])):
        folder = tmp_path / "runs" / name
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config.model_dump(mode="json"))))
        fixed_member(kernel).save(folder / "checkpoints" / "final.keras")
        run = client.create_run(experiment, run_name=name, tags={"output_dir": str(folder)})
        client.set_terminated(run.info.run_id, "FINISHED")
        members.append(run.info.run_id)

    first = ensemble(members, weights=None, fit=True, uri=uri)
    assert first["fitted"] is True
    assert first["weights"] == pytest.approx([0.8, 0.2], abs=0.02), "fitted on another split than validation"
    logged = client.get_run(first["run_id"]).data.params
    assert logged["ensemble.weights_fitted_on"] == "validation"

    # Other test rows and other training rows (the same validation rows): the very same weights.
    write_members_data(data, validation=0.8, train=0.3, test=0.6, seeds=(0, 11, 12))
    second = ensemble(members, weights=None, fit=True, uri=uri)
    assert second["weights"] == first["weights"], "the weights changed with the test or training rows"
    assert second["ensemble"] != first["ensemble"]  # the test rows did change (and are scored)

    # Other validation rows: other weights.
    write_members_data(data, validation=0.3, train=0.5, test=0.1)
    third = ensemble(members, weights=None, fit=True, uri=uri)
    assert third["weights"] == pytest.approx([0.3, 0.7], abs=0.02)


# ---------------------------------------------------------------- retrain: exactly the best epoch count


def test_retrain_trains_exactly_the_best_epoch_count(tmp_path: Path) -> None:
    """The selection phase's validation accuracy is fixed by a callback to peak at epoch 2 of 3 (a maximised metric: the
    lowest value is at epoch 1), so the fresh model must train exactly 2 epochs on train+val."""
    from expkit.experiment.protocols import Context, retrain
    from expkit.selection.objective import Objective

    values, best = [0.5, 0.9, 0.7], 2
    record = tmp_path / "weights.json"
    fake = f"+callbacks.fake={{_target_: tests.fake_metric.FixedMetric, name: val_accuracy, values: {values * 2}, record: '{record}'}}"
    config = compose(
        "protocol=retrain",
        "objective.metric=val_accuracy",
        "trainer.epochs=3",
        "trainer.batch_size=64",
        "dataset.max_train_samples=160",
        "dataset.max_test_samples=50",
        "model.units=8",
        fake,
        *QUIET,
        root=tmp_path,
    )
    result = retrain(Context(config, tmp_path / "run", Objective.from_config(config.objective)))
    selected = json.loads((tmp_path / "run" / "select" / "checkpoints" / "resume" / "state.json").read_text())
    assert len(selected["history"]["loss"]) == 3, "the selection phase trains trainer.epochs"
    assert selected["history"]["val_accuracy"] == values
    assert result.score == values[best - 1]
    assert len(result.outcome.history["loss"]) == best, "the retrained model trains exactly the best epoch count"
    assert result.summary["retrain.epochs"] == best
    assert result.splits.x_val is None and len(result.splits.x_train) == 160  # train+val
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs_run"] == best and metrics["best_epoch"] == best
