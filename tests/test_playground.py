"""The playground source: the TensorFlow Playground's four problems, derived features, the decision-boundary plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from expkit.config.schema import Playground
from expkit.config.validate import validate_config
from expkit.data import load_splits
from expkit.data.playground import features, grid, model_inputs, raw_points
from expkit.errors import ExpkitError
from tests.conftest import compose_config


def compose(tmp_path: Path, *overrides: str):
    return validate_config(compose_config(*overrides, f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path}/out"))


def points(problem: str, **options) -> tuple[np.ndarray, np.ndarray]:
    (train, y_train), (test, y_test) = raw_points(problem, Playground(**options), seed=3)
    return np.concatenate([train, test]), np.concatenate([y_train, y_test])


def test_split_follows_the_ratio_and_the_seed() -> None:
    (train, y_train), (test, _) = raw_points("circle", Playground(num_samples=400, train_fraction=0.3), seed=1)
    assert train.shape == (120, 2) and test.shape == (280, 2) and set(np.unique(y_train)) == {0, 1}
    again = raw_points("circle", Playground(num_samples=400, train_fraction=0.3), seed=1)[0][0]
    other = raw_points("circle", Playground(num_samples=400, train_fraction=0.3), seed=2)[0][0]
    assert np.array_equal(train, again) and not np.array_equal(train, other)
    fixed = Playground(num_samples=400, seed=5)
    assert np.array_equal(raw_points("xor", fixed, seed=1)[0][0], raw_points("xor", fixed, seed=2)[0][0])  # its own seed wins


def test_problems_without_noise_have_the_playground_geometry() -> None:
    x, y = points("gauss")
    assert y.mean() == 0.5
    assert np.allclose(x[y == 1].mean(axis=0), [2, 2], atol=0.2) and np.allclose(x[y == 0].mean(axis=0), [-2, -2], atol=0.2)
    assert x[y == 1].std() == pytest.approx(np.sqrt(0.5), rel=0.15)  # variance 0.5 at noise 0

    x, y = points("circle")
    r = np.hypot(x[:, 0], x[:, 1])
    assert (r[y == 1] < 2.5).all() and (r[y == 0] >= 3.5).all() and (r <= 5).all() and y.mean() == 0.5

    x, y = points("xor")
    assert (np.abs(x) >= 0.3).all() and (np.abs(x) <= 5.3).all()
    assert np.array_equal(y, (x[:, 0] * x[:, 1] >= 0).astype(int))

    x, y = points("spiral")
    r = np.hypot(x[:, 0], x[:, 1])
    assert r.max() < 5 and y.mean() == 0.5
    pos, neg = x[y == 1], -x[y == 0]  # the negative spiral is the positive one turned by pi
    assert np.allclose(pos[np.lexsort(pos.T)], neg[np.lexsort(neg.T)], atol=1e-9)


def test_noise_flips_labels_near_the_boundary_and_spreads_gauss() -> None:
    x, y = points("circle", noise=0.5)
    r = np.hypot(x[:, 0], x[:, 1])
    wrong = ((r < 2.5) & (y == 0)) | ((r >= 3.5) & (y == 1))
    assert 0.05 < wrong.mean() < 0.6
    assert points("gauss", noise=0.5)[0].std() > points("gauss")[0].std() * 1.2


def test_derived_features() -> None:
    p = np.array([[1.0, -2.0], [0.5, 3.0]])
    names = ["x1", "x2", "x1_squared", "x2_squared", "x1_x2", "sin_x1", "sin_x2"]
    expected = np.array([[1, -2, 1, 4, -2, np.sin(1), np.sin(-2)], [0.5, 3, 0.25, 9, 1.5, np.sin(0.5), np.sin(3)]])
    assert np.allclose(features(p, names), expected, atol=1e-6) and features(p, names).dtype == np.float32
    assert features(p, ["sin_x2"]).shape == (2, 1)


def test_source_through_the_config(tmp_path: Path) -> None:
    config = compose(tmp_path, "+experiment=playground_circle", "dataset.playground.features=[x1,x2,x1_squared]")
    splits = load_splits(config.dataset, data_dir=None, seed=config.seed)
    assert splits.x_train.shape == (250, 3) and splits.y_test.shape == (250,) and splits.y_train.dtype == np.float32
    assert np.allclose(splits.x_train[:, 2], splits.x_train[:, 0] ** 2, rtol=1e-5)
    # The plot's grid goes through the same features and preprocessing as the training data.
    raw, xx, _ = grid(20)
    assert model_inputs(config.dataset, config.seed, raw).shape == (400, 3) and xx.shape == (20, 20)
    standardized = compose(tmp_path, "+experiment=playground_xor", "dataset.preprocess.x=[{op: standardize}]")
    train = load_splits(standardized.dataset, data_dir=None, seed=1).x_train
    (raw_train, _), _ = raw_points("xor", standardized.dataset.playground, 1)
    assert np.allclose(model_inputs(standardized.dataset, 1, raw_train), train, atol=1e-5)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("dataset.playground.features=[x1,x3]", "dataset.playground.features.1"),
        ("dataset.playground.noise=0.8", "dataset.playground.noise"),
        ("dataset.playground.train_fraction=1", "dataset.playground.train_fraction"),
    ],
)
def test_bad_playground_options_fail_validation(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ExpkitError, match=message.replace(".", r"\.")):
        compose(tmp_path, "+experiment=playground_circle", override)


def test_unknown_problem_suggests_one(tmp_path: Path) -> None:
    config = compose(tmp_path, "+experiment=playground_circle", "dataset.name=cirle")
    with pytest.raises(ExpkitError, match="did you mean 'circle'"):
        load_splits(config.dataset, data_dir=None, seed=1)


def test_decision_boundary_png(tmp_path: Path) -> None:
    from PIL import Image

    from expkit.tracking.plots import decision_boundary_png

    raw, xx, yy = grid(30)
    probability = (np.hypot(raw[:, 0], raw[:, 1]) < 2.5).astype(float).reshape(xx.shape)
    test, labels = points("circle")
    path = decision_boundary_png(probability, xx, yy, test, labels, tmp_path / "db.png", "circle")
    with Image.open(path) as image:
        assert image.size[0] >= 400 and image.size[1] >= 400
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    assert pixels.std() > 20  # a drawn field, not a blank canvas
