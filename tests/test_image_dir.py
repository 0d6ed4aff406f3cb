"""The image_dir source: a train/ [validation/] test/ folder tree of class sub-folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from expkit.config.schema import Dataset
from expkit.data.pipeline import load_splits
from expkit.errors import ExpkitError
from tests.conftest import mlflow_runs, run_inprocess


def write_tree(root: Path, classes: dict[str, int], splits: tuple[str, ...] = ("train", "validation", "test"), size: int = 12) -> Path:
    """Class c's images are bright in channel c and dark elsewhere, so they are easy to tell apart."""
    rng = np.random.default_rng(0)
    for split in splits:
        for c, (name, count) in enumerate(classes.items()):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 60, (size + 4, size, 3), dtype=np.uint8)
                pixels[..., c % 3] += 180
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def image_dataset(path: Path, **extra: object) -> Dataset:
    return Dataset.model_validate({"source": "image_dir", "name": "pets", "path": str(path), "image_size": [8, 8], **extra})


def stream(splits, name: str, **kw: object) -> tuple[np.ndarray, np.ndarray]:
    """All batches of a streamed split, concatenated: (images, labels)."""
    xs, ys = zip(*[(np.asarray(x), np.asarray(y)) for x, y in splits.batches(name, 4, **kw)], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def test_folder_tree_streams_resized_with_its_own_validation_split(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "pets", {"cats": 6, "dogs": 4})
    splits = load_splits(image_dataset(root, preprocess={"x": [{"op": "scale", "divisor": 255.0}]}), data_dir=None, seed=0)
    assert splits.class_names == ["cats", "dogs"] and splits.input_shape == (8, 8, 3)
    x_train, y_train = stream(splits, "train", train=True, shuffle=True, seed=0)
    assert x_train.shape == (10, 8, 8, 3) and x_train.dtype == np.float32 and x_train.max() <= 1.0
    assert stream(splits, "validation")[0].shape == (10, 8, 8, 3) and stream(splits, "test")[0].shape == (10, 8, 8, 3)
    assert sorted(y_train.tolist()) == [0] * 6 + [1] * 4  # class index = sorted folder name
    assert y_train.tolist() != sorted(y_train.tolist())  # shuffled, not class by class
    brightest = x_train.reshape(10, -1, 3).mean(axis=1).argmax(axis=1)
    np.testing.assert_array_equal(brightest, y_train)  # images stay paired with their labels


def test_grayscale_has_one_channel(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "pets", {"a": 2, "b": 2}, splits=("train", "test"))
    splits = load_splits(image_dataset(root, color_mode="grayscale"), data_dir=None, seed=0)
    assert stream(splits, "train")[0].shape == (4, 8, 8, 1) and splits.x_val is None


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda r: write_tree(r, {"cats": 3}), "has 1 class folder(s): cats; a classifier needs at least 2"),
        (
            lambda r: (write_tree(r, {"cats": 3, "dogs": 3}), *[p.unlink() for p in (r / "test" / "dogs").iterdir()]),
            "test/dogs holds no images",
        ),
        (
            lambda r: (write_tree(r, {"cats": 3, "dogs": 3}), (r / "train" / "dogs" / "1.png").write_bytes(b"not a png")),
            "cannot read image",
        ),
        (lambda r: r.mkdir(), "train does not exist"),
    ],
    ids=["one_class", "empty_class", "unreadable_image", "no_train_folder"],
)
def test_bad_image_folders_name_the_problem(tmp_path: Path, make, expected: str) -> None:
    root = tmp_path / "pets"
    make(root)
    with pytest.raises(ExpkitError, match=r"dataset\.path") as info:
        load_splits(image_dataset(root), data_dir=None, seed=0)
    assert expected in str(info.value)
    assert str(root) in str(info.value)


CONVNET = (
    "model.layers=[{type: Conv2D, filters: 4, kernel_size: 3, activation: relu}, {type: MaxPooling2D, pool_size: 2},"
    " {type: Flatten}, {type: Dense, units: 1, activation: sigmoid}]"
)


@pytest.mark.slow
def test_image_folder_trains_end_to_end_and_a_broken_image_fails_cleanly(workdir: Path) -> None:
    root = write_tree(workdir / "pets", {"cats": 20, "dogs": 20})
    args = ("train", "dataset=image_dir", f"dataset.path={root}", "dataset.image_size=[16,16]", "~model.units", CONVNET)
    common = (
        *args,
        "model.loss=binary_crossentropy",
        "trainer.epochs=8",
        "trainer.batch_size=8",
        "trainer.verbose=0",
        "tracking.log_model=false",
    )
    done = run_inprocess(*common, cwd=workdir)
    assert done.returncode == 0, done.stderr
    (run,) = mlflow_runs(workdir, "digits_mlp")
    assert run.data.metrics["test_accuracy"] >= 0.9 and "val_loss" in run.data.metrics

    (root / "test" / "cats" / "3.png").write_bytes(b"\x89PNG broken")
    failed = run_inprocess(*common, cwd=workdir)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert f"cannot read image {root / 'test' / 'cats' / '3.png'}" in failed.stderr
    statuses = sorted(r.info.status for r in mlflow_runs(workdir, "digits_mlp"))
    assert statuses == ["FAILED", "FINISHED"]
