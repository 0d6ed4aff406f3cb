"""Acceptance 2: Boston housing written out as CSV, through the table source, is `boston_final` (real shared data)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, compose, output_dirs, read_metrics, run_inprocess

sys.path.insert(0, str(REPO / "experiments"))
from boston_csv import write_boston_csv

# boston_final's seed spread (experiments/targets.yaml): std of test MAE over 7 seeds.
BOSTON_FINAL_STD = 0.0923


@pytest.fixture
def boston_dir(shared_data: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "boston_housing.npz").symlink_to(shared_data / "boston_housing.npz")
    write_boston_csv(folder / "boston_housing.npz", folder)
    return folder


def test_csv_rows_are_boston_finals_split_and_the_models_have_the_same_trainable_params(boston_dir: Path, tmp_path: Path) -> None:
    from expkit.data.pipeline import load_splits
    from expkit.models.preprocessing import trainable_params
    from expkit.training.runner import build_configured_model, name_splits

    table = compose("+experiment=boston_table", f"paths.data_dir={boston_dir}", root=tmp_path)
    final = compose("+experiment=boston_final", f"paths.data_dir={boston_dir}", root=tmp_path)
    t = load_splits(table.dataset, data_dir=str(boston_dir), seed=42)
    f = load_splits(final.dataset, data_dir=str(boston_dir), seed=42)
    assert t.sizes == f.sizes == {"train": 404, "test": 102}
    np.testing.assert_allclose(t.y_train["MEDV"], f.y_train, rtol=1e-6)
    raw = np.stack([t.x_train[c] for c in t.feature_types], axis=1)
    mean, std = raw.astype(np.float64).mean(axis=0), raw.astype(np.float64).std(axis=0)
    np.testing.assert_allclose((raw - mean) / std, f.x_train, atol=1e-5)  # the same rows, columns and standardization
    table_model = build_configured_model(table, name_splits(table.model, t))
    final_model = build_configured_model(final, name_splits(final.model, f))
    # The same parameters: the Normalization layers hold their fitted statistics as constants, not weights, so even
    # count_params() (which counts non-trainable weights too) is boston_final's.
    assert trainable_params(table_model) == trainable_params(final_model) == 5121
    assert table_model.count_params() == final_model.count_params() == 5121


@pytest.mark.slow
def test_boston_table_gives_boston_finals_test_mae(boston_dir: Path, tmp_path: Path) -> None:
    maes = {}
    for preset in ("boston_final", "boston_table"):
        root = tmp_path / preset
        root.mkdir()
        args = ("train", f"+experiment={preset}", f"paths.data_dir={boston_dir}", "tracking.enabled=false", "trainer.verbose=0")
        done = run_inprocess(*args, cwd=root)
        assert done.returncode == 0, done.stderr[-3000:]
        (run_dir,) = output_dirs(root)
        maes[preset] = read_metrics(run_dir)["test"]["test_mae"]
    assert abs(maes["boston_table"] - maes["boston_final"]) <= 3 * BOSTON_FINAL_STD, maes
