"""expkit.data: dataset sources (local Keras-layout files), preprocessing steps and load_splits."""

from __future__ import annotations

import builtins
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from expkit.config.schema import Dataset, OneHot, Standardize
from expkit.data.catalog import get_loader
from expkit.data.pipeline import fingerprint, load_splits
from expkit.data.preprocess import apply_steps, fit_step, multi_hot, one_hot, pad_sequences
from expkit.data.sources import load_boston_housing, load_imdb, load_reuters
from expkit.errors import ExpkitError
from tests.conftest import BlockedDownloads, expkit_env
from tests.datagen import write_image_npz, write_imdb_npz, write_reuters_npz

BOSTON_FIRST_TRAIN_TARGETS = [15.2, 42.3, 50.0, 21.1, 17.7]  # /work/shared/datasets/README.md


def dataset(**fields: Any) -> Dataset:
    """A validated `dataset` config node; keras mnist unless told otherwise."""
    return Dataset.model_validate({"source": "keras", "name": "mnist", **fields})


def as_lists(seqs: Any) -> list[list[int]]:
    return [[int(w) for w in s] for s in seqs]


# --- reference re-implementations of keras.datasets (keras/src/datasets/imdb.py, reuters.py) ---


def encode_like_keras(seqs: list[Any], num_words: int, start_char: int = 1, oov_char: int = 2, index_from: int = 3) -> list[list[int]]:
    shifted = [[start_char] + [w + index_from for w in x] for x in seqs]
    return [[w if 0 <= w < num_words else oov_char for w in x] for x in shifted]


def keras_imdb_reference(path: Path, num_words: int, seed: int = 113) -> tuple[tuple[list, np.ndarray], tuple[list, np.ndarray]]:
    with np.load(path, allow_pickle=True) as f:
        x_train, labels_train, x_test, labels_test = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
    rng = np.random.RandomState(seed)
    indices = np.arange(len(x_train))
    rng.shuffle(indices)
    x_train, labels_train = x_train[indices], labels_train[indices]
    indices = np.arange(len(x_test))
    rng.shuffle(indices)
    x_test, labels_test = x_test[indices], labels_test[indices]
    xs = encode_like_keras(list(x_train) + list(x_test), num_words)
    labels = np.concatenate([labels_train, labels_test])
    idx = len(x_train)
    return (xs[:idx], labels[:idx]), (xs[idx:], labels[idx:])


def keras_reuters_reference(path: Path, num_words: int, seed: int = 113, test_split: float = 0.2) -> tuple[tuple, tuple]:
    with np.load(path, allow_pickle=True) as f:
        xs, labels = f["x"], f["y"]
    rng = np.random.RandomState(seed)
    indices = np.arange(len(xs))
    rng.shuffle(indices)
    xs = encode_like_keras(list(xs[indices]), num_words)
    labels = labels[indices]
    idx = int(len(xs) * (1 - test_split))
    return (xs[:idx], labels[:idx]), (xs[idx:], labels[idx:])


# --- boston housing (real data) ----------------------------------------------------------


def test_boston_local_file_gives_keras_split(shared_data: Path) -> None:
    (x_train, y_train), (x_test, y_test) = load_boston_housing(data_dir=str(shared_data))
    assert x_train.shape == (404, 13) and y_train.shape == (404,)
    assert x_test.shape == (102, 13) and y_test.shape == (102,)
    np.testing.assert_allclose(y_train[:5], BOSTON_FIRST_TRAIN_TARGETS)
    # The split is a permutation of the file's rows: nothing lost, nothing duplicated.
    with np.load(shared_data / "boston_housing.npz") as f:
        x_all, y_all = f["x"], f["y"]
    both = np.concatenate([np.column_stack([x_train, y_train]), np.column_stack([x_test, y_test])])
    np.testing.assert_array_equal(np.sort(both, axis=0), np.sort(np.column_stack([x_all, y_all]), axis=0))


def test_boston_explicit_path_beats_data_dir(shared_data: Path, tmp_path: Path) -> None:
    (x_train, _), _ = load_boston_housing(path=str(shared_data / "boston_housing.npz"), data_dir=str(tmp_path))
    assert len(x_train) == 404


def test_boston_standardize_uses_training_rows_after_holdout(shared_data: Path) -> None:
    ds = dataset(name="boston_housing", preprocess={"x": [{"op": "standardize"}]}, validation={"holdout": 100})
    splits = load_splits(ds, data_dir=str(shared_data), seed=0)
    (raw_x, raw_y), (raw_x_test, _) = load_boston_housing(data_dir=str(shared_data))
    fit_rows = raw_x[100:]  # the holdout (first 100 rows) must not leak into the statistics
    mean, std = fit_rows.mean(axis=0), fit_rows.std(axis=0)
    assert splits.x_train.shape == (304, 13) and splits.x_val.shape == (100, 13) and splits.x_test.shape == (102, 13)
    np.testing.assert_allclose(splits.x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(splits.x_train.std(axis=0), 1, atol=1e-4)
    np.testing.assert_allclose(splits.x_val, (raw_x[:100] - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(splits.x_test, (raw_x_test - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(splits.y_val, raw_y[:100])
    assert splits.x_train.dtype == np.float32


# --- imdb / reuters: Keras' conventions ------------------------------------------------------


@pytest.mark.parametrize("num_words", [5, 60, 10000])
def test_imdb_local_file_matches_keras_algorithm(tmp_path: Path, num_words: int) -> None:
    path = write_imdb_npz(tmp_path / "imdb.npz", n_train=120, n_test=80, vocab=300, seed=1)
    (x_train, y_train), (x_test, y_test) = load_imdb(data_dir=str(tmp_path), num_words=num_words)
    (ref_x_train, ref_y_train), (ref_x_test, ref_y_test) = keras_imdb_reference(path, num_words)
    assert x_train.dtype == object and len(x_train) == 120 and len(x_test) == 80
    assert as_lists(x_train) == ref_x_train
    assert as_lists(x_test) == ref_x_test
    np.testing.assert_array_equal(y_train, ref_y_train)
    np.testing.assert_array_equal(y_test, ref_y_test)
    assert all(s[0] == 1 for s in x_train)  # start_char
    assert max(max(s) for s in x_train) < num_words


def test_imdb_without_num_words_keeps_every_word(tmp_path: Path) -> None:
    path = write_imdb_npz(tmp_path / "imdb.npz", n_train=50, n_test=30, vocab=300, seed=2)
    (x_train, _), (x_test, _) = load_imdb(path=str(path))
    # keras' docs: "If None, all words are kept" -> every raw rank shifted by index_from=3, no OOV.
    (ref_train, _), (ref_test, _) = keras_imdb_reference(path, num_words=10**9)
    assert as_lists(x_train) == ref_train and as_lists(x_test) == ref_test
    assert 2 not in {w for s in x_train for w in s}


@pytest.mark.parametrize("num_words", [20, 10000])
def test_reuters_local_file_matches_keras_algorithm(tmp_path: Path, num_words: int) -> None:
    path = write_reuters_npz(tmp_path / "reuters.npz", n=301, vocab=200, seed=3)
    (x_train, y_train), (x_test, y_test) = load_reuters(data_dir=str(tmp_path), num_words=num_words)
    (ref_x_train, ref_y_train), (ref_x_test, ref_y_test) = keras_reuters_reference(path, num_words)
    assert len(x_train) == int(301 * 0.8) == 240 and len(x_test) == 61
    assert as_lists(x_train) == ref_x_train
    assert as_lists(x_test) == ref_x_test
    np.testing.assert_array_equal(y_train, ref_y_train)
    np.testing.assert_array_equal(y_test, ref_y_test)


def test_imdb_pipeline_multi_hot_and_cast(tmp_path: Path) -> None:
    write_imdb_npz(tmp_path / "imdb.npz", n_train=100, n_test=40, vocab=400, seed=4)
    ds = dataset(
        name="imdb",
        num_words=50,
        preprocess={"x": [{"op": "multi_hot", "num_words": 50}], "y": [{"op": "cast", "dtype": "float32"}]},
    )
    splits = load_splits(ds, data_dir=str(tmp_path), seed=0)
    (raw_train, raw_y), _ = load_imdb(data_dir=str(tmp_path), num_words=50)
    assert splits.x_train.shape == (100, 50) and splits.x_test.shape == (40, 50)
    assert splits.y_train.dtype == np.float32
    np.testing.assert_array_equal(splits.y_train, raw_y.astype(np.float32))
    for row, seq in zip(splits.x_train, raw_train, strict=True):
        assert set(np.flatnonzero(row)) == set(int(w) for w in seq)


def test_synthetic_text_and_image_labels_are_learnable(tmp_path: Path) -> None:
    """The generated files carry a label signal a simple model finds (well above chance)."""
    from sklearn.linear_model import LogisticRegression

    write_imdb_npz(tmp_path / "imdb.npz", n_train=300, n_test=200, vocab=500, seed=5)
    (x_train, y_train), (x_test, y_test) = load_imdb(data_dir=str(tmp_path), num_words=100)
    clf = LogisticRegression(max_iter=500).fit(multi_hot(x_train, 100), y_train)
    assert clf.score(multi_hot(x_test, 100), y_test) > 0.9  # chance: 0.5

    write_reuters_npz(tmp_path / "reuters.npz", n=1000, vocab=500, num_classes=46, seed=6)
    (x_train, y_train), (x_test, y_test) = load_reuters(data_dir=str(tmp_path), num_words=100)
    clf = LogisticRegression(max_iter=1000).fit(multi_hot(x_train, 100), y_train)
    assert clf.score(multi_hot(x_test, 100), y_test) > 0.5  # chance: ~1/46

    write_image_npz(tmp_path / "mnist.npz", n_train=200, n_test=100, shape=(8, 8), num_classes=10, seed=7)
    (x_train, y_train), (x_test, y_test) = get_loader("keras", "mnist")(data_dir=str(tmp_path))
    assert x_train.dtype == np.uint8 and y_train.dtype == np.uint8 and x_train.shape == (200, 8, 8)
    centroids = np.stack([x_train[y_train == c].reshape(-1, 64).mean(axis=0) for c in range(10)])
    dists = ((x_test.reshape(-1, 1, 64).astype(float) - centroids[None]) ** 2).sum(axis=-1)
    assert (dists.argmin(axis=1) == y_test).mean() > 0.9  # chance: 0.1


# --- preprocessing steps ----------------------------------------------------------------------


def test_multi_hot_matches_naive_loop() -> None:
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 40, rng.integers(0, 15)).tolist() for _ in range(60)] + [[], [39, 39, 0]]
    got = multi_hot(seqs, 32)  # words 32..39 fall outside num_words and are dropped
    want = np.zeros((len(seqs), 32))
    for i, seq in enumerate(seqs):
        for w in seq:
            if w < 32:
                want[i, w] = 1
    assert got.dtype == np.uint8 and got.shape == (62, 32)
    np.testing.assert_array_equal(got, want)


def test_multi_hot_all_empty() -> None:
    got = multi_hot([[], []], 5)
    assert got.dtype == np.uint8 and got.shape == (2, 5) and not got.any()


def test_one_hot_encodes_labels() -> None:
    got = one_hot(np.array([2, 0, 1, 2]), 3)
    np.testing.assert_array_equal(got, [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    # Keras-style (n, 1) labels and integral floats are accepted.
    np.testing.assert_array_equal(one_hot(np.array([[1], [0]], dtype=np.uint8), 2), [[0, 1], [1, 0]])
    np.testing.assert_array_equal(one_hot(np.array([1.0, 0.0]), 2), [[0, 1], [1, 0]])


@pytest.mark.parametrize("labels", [[0, 3, 10], [-1, 2]])
def test_one_hot_rejects_out_of_range_labels(labels: list[int]) -> None:
    with pytest.raises(ExpkitError, match="num_classes") as info:
        one_hot(np.array(labels), 10)
    assert "outside 0..9" in str(info.value)
    assert info.value.key == "dataset.preprocess.y.one_hot.num_classes"


def test_one_hot_rejects_fractional_labels() -> None:
    with pytest.raises(ExpkitError, match="integer class labels"):
        one_hot(np.array([0.5, 1.0]), 2)


def test_one_hot_step_error_names_num_classes_in_pipeline(tmp_path: Path) -> None:
    write_image_npz(tmp_path / "mnist.npz", n_train=30, n_test=10, shape=(4, 4), num_classes=10, seed=0)
    ds = dataset(preprocess={"y": [{"op": "one_hot", "num_classes": 5}]})
    with pytest.raises(ExpkitError, match=r"num_classes.*\n.*at least 10"):
        load_splits(ds, data_dir=str(tmp_path), seed=0)


def test_standardize_uses_training_statistics_only() -> None:
    rng = np.random.default_rng(1)
    train = rng.normal(5, 3, (200, 4))
    train[:, 3] = 7.0  # a constant column: std 0 is treated as 1
    test = rng.normal(-20, 10, (50, 4))
    out_train, (out_test,) = apply_steps([Standardize(op="standardize")], train, [test], "dataset.preprocess.x")
    mean, std = train.mean(axis=0), train.std(axis=0)
    std[3] = 1.0
    np.testing.assert_allclose(out_test, (test - mean) / std, rtol=1e-5)
    np.testing.assert_allclose(out_train, (train - mean) / std, rtol=1e-5, atol=1e-6)
    assert out_test.dtype == np.float32
    assert abs(out_test[:, 0].mean()) > 3  # test data was NOT centred on its own statistics
    np.testing.assert_array_equal(out_train[:, 3], 0)


def test_fit_step_one_hot_via_schema_object() -> None:
    transform = fit_step(OneHot(op="one_hot", num_classes=4), np.array([0, 1]))
    np.testing.assert_array_equal(transform(np.array([3])), [[0, 0, 0, 1]])


@pytest.mark.parametrize("padding", ["pre", "post"])
@pytest.mark.parametrize("truncating", ["pre", "post"])
def test_pad_sequences_matches_keras(padding: str, truncating: str) -> None:
    import keras

    rng = np.random.default_rng(2)
    seqs = [rng.integers(1, 100, rng.integers(0, 12)).tolist() for _ in range(40)] + [[], list(range(1, 7))]
    got = pad_sequences(seqs, 6, padding, truncating)
    want = keras.utils.pad_sequences(seqs, maxlen=6, padding=padding, truncating=truncating)
    assert got.dtype == np.int32 and got.shape == (42, 6)
    np.testing.assert_array_equal(got, want)


# --- load_splits ------------------------------------------------------------------------------


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    write_image_npz(tmp_path / "mnist.npz", n_train=200, n_test=50, shape=(6, 6), num_classes=10, seed=11)
    return tmp_path


def raw_images(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "mnist.npz") as f:
        return {k: f[k] for k in f.files}


def test_load_splits_holdout_count(image_dir: Path) -> None:
    ds = dataset(preprocess={"x": [{"op": "flatten"}, {"op": "scale", "divisor": 255.0}]}, validation={"holdout": 50})
    splits = load_splits(ds, data_dir=str(image_dir), seed=0)
    raw = raw_images(image_dir)
    assert splits.x_train.shape == (150, 36) and splits.x_val.shape == (50, 36) and splits.x_test.shape == (50, 36)
    np.testing.assert_allclose(splits.x_val, raw["x_train"][:50].reshape(50, 36) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(splits.x_train, raw["x_train"][50:].reshape(150, 36) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(splits.y_val, raw["y_train"][:50])
    np.testing.assert_array_equal(splits.y_train, raw["y_train"][50:])


def test_load_splits_holdout_fraction(image_dir: Path) -> None:
    ds = dataset(validation={"holdout": 0.3}, preprocess={"y": [{"op": "one_hot", "num_classes": 10}]})
    splits = load_splits(ds, data_dir=str(image_dir), seed=0)
    assert len(splits.x_val) == int(200 * 0.3) == 60 and len(splits.x_train) == 140
    assert splits.y_val.shape == (60, 10) and splits.y_test.shape == (50, 10)
    np.testing.assert_array_equal(splits.y_val.argmax(axis=1), raw_images(image_dir)["y_train"][:60])


def test_load_splits_keras_validation_split(image_dir: Path) -> None:
    splits = load_splits(dataset(validation={"split": 0.2}), data_dir=str(image_dir), seed=0)
    raw = raw_images(image_dir)
    # Keras' validation_split semantics: the last 20% of training data, taken before shuffling.
    assert len(splits.x_train) == 160 and len(splits.x_val) == 40
    np.testing.assert_array_equal(splits.x_val, raw["x_train"][160:])
    np.testing.assert_array_equal(splits.y_train, raw["y_train"][:160])


def test_load_splits_without_validation(image_dir: Path) -> None:
    splits = load_splits(dataset(), data_dir=str(image_dir), seed=0)
    assert splits.x_val is None and splits.y_val is None and len(splits.x_train) == 200


def test_load_splits_max_samples(image_dir: Path) -> None:
    splits = load_splits(dataset(max_train_samples=30, max_test_samples=7), data_dir=str(image_dir), seed=0)
    raw = raw_images(image_dir)
    np.testing.assert_array_equal(splits.x_train, raw["x_train"][:30])
    np.testing.assert_array_equal(splits.y_test, raw["y_test"][:7])


@pytest.mark.parametrize("holdout", [200, 500])
def test_load_splits_holdout_too_large(image_dir: Path, holdout: int) -> None:
    with pytest.raises(ExpkitError, match=r"dataset\.validation\.holdout") as info:
        load_splits(dataset(validation={"holdout": holdout}), data_dir=str(image_dir), seed=0)
    assert "200 samples" in str(info.value)


def test_fingerprint_tells_data_apart(image_dir: Path) -> None:
    first = load_splits(dataset(), data_dir=str(image_dir), seed=0).fingerprint
    again = load_splits(dataset(validation={"holdout": 10}), data_dir=str(image_dir), seed=1).fingerprint
    assert first == again and len(first) == 16
    write_image_npz(image_dir / "mnist.npz", n_train=200, n_test=50, shape=(6, 6), num_classes=10, seed=12)
    assert load_splits(dataset(), data_dir=str(image_dir), seed=0).fingerprint != first


def test_fingerprint_of_sequences() -> None:
    seqs = np.empty(2, dtype=object)
    seqs[:] = [np.array([1, 2]), np.array([3, 4, 5])]
    changed = np.empty(2, dtype=object)
    changed[:] = [np.array([1, 2]), np.array([3, 4, 6])]
    assert fingerprint(seqs) == fingerprint(seqs.copy())
    assert fingerprint(seqs) != fingerprint(changed)


def test_fingerprint_sees_sequence_boundaries() -> None:
    seqs = np.empty(2, dtype=object)
    seqs[:] = [np.array([1, 2]), np.array([3])]
    other = np.empty(2, dtype=object)
    other[:] = [np.array([1]), np.array([2, 3])]
    assert fingerprint(seqs) != fingerprint(other)


# --- errors -----------------------------------------------------------------------------------


def test_missing_explicit_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "mnist.npz"
    with pytest.raises(ExpkitError) as info:
        load_splits(dataset(path=str(missing)), data_dir=None, seed=0)
    assert "dataset.path" in str(info.value) and str(missing) in str(info.value)
    assert "does not exist" in str(info.value)


def test_truncated_real_npz(shared_data: Path, tmp_path: Path) -> None:
    raw = (shared_data / "boston_housing.npz").read_bytes()
    cut = tmp_path / "boston_housing.npz"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ExpkitError) as info:
        load_splits(dataset(name="boston_housing"), data_dir=str(tmp_path), seed=0)
    assert str(cut) in str(info.value) and "truncated" in str(info.value)


@pytest.mark.parametrize("name", ["mnist", "boston_housing"])
def test_garbage_bytes_npz(tmp_path: Path, name: str) -> None:
    bad = tmp_path / f"{name}.npz"
    bad.write_bytes(b"this is not a zip file at all\x00\x01\x02" * 20)
    with pytest.raises(ExpkitError) as info:
        load_splits(dataset(name=name, path=str(bad)), data_dir=None, seed=0)
    assert f"cannot read {bad}" in str(info.value)


def corrupt_member(path: Path, member: str) -> None:
    """Overwrite the start of one compressed member's deflate stream (the zip directory stays valid)."""
    info = zipfile.ZipFile(path).getinfo(member)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    raw[start : start + 16] = b"\xff" * 16
    path.write_bytes(bytes(raw))


def test_corrupt_compressed_member(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    rng = np.random.default_rng(0)
    np.savez_compressed(
        path,
        x_train=rng.integers(0, 255, (50, 8, 8), dtype=np.uint8),
        y_train=np.zeros(50, np.uint8),
        x_test=np.zeros((5, 8, 8), np.uint8),
        y_test=np.zeros(5, np.uint8),
    )
    corrupt_member(path, "x_train.npy")
    with pytest.raises(ExpkitError, match=r"mnist\.npz"):
        load_splits(dataset(), data_dir=str(tmp_path), seed=0)


def test_npy_file_named_npz(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((3, 4)))
    with pytest.raises(ExpkitError, match=r"mnist\.npz"):
        load_splits(dataset(), data_dir=str(tmp_path), seed=0)


@pytest.mark.parametrize("name", ["imdb", "reuters"])
def test_garbage_bytes_pickled_layout(tmp_path: Path, name: str) -> None:
    (tmp_path / f"{name}.npz").write_bytes(b"this is not a zip file at all" * 20)
    with pytest.raises(ExpkitError, match=rf"{name}\.npz"):
        load_splits(dataset(name=name), data_dir=str(tmp_path), seed=0)


class _Gadget:
    """Unpickles to a call of exec(): a stand-in for a malicious dataset file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def test_pickled_npz_cannot_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    x = np.empty(2, dtype=object)
    x[0], x[1] = [1, 2, 3], _Gadget(marker)
    np.savez(tmp_path / "imdb.npz", x_train=x, y_train=np.array([0, 1]), x_test=x[:1].copy(), y_test=np.array([0]))
    try:
        with pytest.raises(ExpkitError, match=r"imdb\.npz"):
            load_imdb(data_dir=str(tmp_path))
    finally:
        assert not marker.exists(), "loading the dataset file executed code from it"


@pytest.mark.parametrize(
    ("name", "arrays", "missing"),
    [
        ("mnist", {"x_train": np.zeros((2, 2)), "y_train": np.zeros(2), "x_test": np.zeros((1, 2))}, "y_test"),
        ("boston_housing", {"x": np.zeros((5, 2))}, "y"),
        ("reuters", {"xs": np.zeros(3), "y": np.zeros(3)}, "x"),
    ],
)
def test_missing_keys(tmp_path: Path, name: str, arrays: dict[str, np.ndarray], missing: str) -> None:
    path = tmp_path / f"{name}.npz"
    np.savez(path, **arrays)
    with pytest.raises(ExpkitError) as info:
        load_splits(dataset(name=name), data_dir=str(tmp_path), seed=0)
    message = str(info.value)
    assert str(path) in message and f"no array(s) {missing}" in message
    assert f"it has: {', '.join(arrays)}" in message


@pytest.mark.parametrize(("split", "n_x", "n_y"), [("training", 20, 19), ("test", 5, 6)])
def test_features_labels_length_mismatch(tmp_path: Path, split: str, n_x: int, n_y: int) -> None:
    good = {"x_train": np.zeros((20, 3, 3), np.uint8), "y_train": np.zeros(20, np.uint8)}
    good |= {"x_test": np.zeros((5, 3, 3), np.uint8), "y_test": np.zeros(5, np.uint8)}
    prefix = "x_train" if split == "training" else "x_test"
    good[prefix] = np.zeros((n_x, 3, 3), np.uint8)
    good[prefix.replace("x", "y")] = np.zeros(n_y, np.uint8)
    np.savez(tmp_path / "mnist.npz", **good)
    with pytest.raises(ExpkitError, match=f"{prefix} has {n_x} samples but {prefix.replace('x', 'y')} has {n_y}") as info:
        load_splits(dataset(), data_dir=str(tmp_path), seed=0)
    assert str(tmp_path / "mnist.npz") in str(info.value)


@pytest.mark.parametrize("name", ["boston_housing", "reuters", "imdb"])
@pytest.mark.parametrize("n_y", [19, 21])
def test_shuffled_layout_length_mismatch(tmp_path: Path, name: str, n_y: int) -> None:
    if name == "reuters":
        write_reuters_npz(tmp_path / "full.npz", n=20, vocab=100, seed=0)
        with np.load(tmp_path / "full.npz", allow_pickle=True) as f:
            np.savez(tmp_path / "reuters.npz", x=f["x"], y=np.zeros(n_y, np.int64))
    elif name == "imdb":
        write_imdb_npz(tmp_path / "full.npz", n_train=20, n_test=5, vocab=100, seed=0)
        with np.load(tmp_path / "full.npz", allow_pickle=True) as f:
            arrays = {k: f[k] for k in f.files}
        np.savez(tmp_path / "imdb.npz", **(arrays | {"y_train": np.zeros(n_y, np.int64)}))
    else:
        np.savez(tmp_path / "boston_housing.npz", x=np.ones((20, 3)), y=np.ones(n_y))
    with pytest.raises(ExpkitError, match="labels"):
        load_splits(dataset(name=name), data_dir=str(tmp_path), seed=0)


@pytest.mark.parametrize(("where", "what"), [("x_train", "training data features"), ("y_test", "test data labels")])
def test_nan_rejected(tmp_path: Path, where: str, what: str) -> None:
    arrays = {"x_train": np.ones((20, 3)), "y_train": np.zeros(20), "x_test": np.ones((5, 3)), "y_test": np.zeros(5)}
    arrays[where][1] = np.nan
    if where == "x_train":
        arrays[where][2, 0] = np.inf
    np.savez(tmp_path / "mnist.npz", **arrays)
    bad = 4 if where == "x_train" else 1  # a NaN row of 3 plus one inf
    with pytest.raises(ExpkitError, match=rf"^dataset: {tmp_path / 'mnist.npz'}: {what} contain {bad} NaN or inf value") as info:
        load_splits(dataset(), data_dir=str(tmp_path), seed=0)
    assert "clean the data" in str(info.value)


def test_nan_in_boston_layout(tmp_path: Path) -> None:
    x = np.ones((30, 4))
    x[:, 2] = np.nan  # every row, so both splits hold NaN
    np.savez(tmp_path / "boston_housing.npz", x=x, y=np.ones(30))
    with pytest.raises(ExpkitError, match="training data features contain 24 NaN"):
        load_splits(dataset(name="boston_housing"), data_dir=str(tmp_path), seed=0)


def test_unknown_source_and_name() -> None:
    with pytest.raises(ExpkitError, match=r"(?s)dataset.source: unknown dataset source 'kears'.*did you mean 'keras'"):
        get_loader("kears", "mnist")
    with pytest.raises(ExpkitError, match=r"(?s)dataset.name: unknown keras dataset 'mnsit'.*did you mean 'mnist'"):
        get_loader("keras", "mnsit")


OFFLINE_MNIST = """
import sys
from expkit.config.schema import Dataset
from expkit.data.pipeline import load_splits
from expkit.errors import ExpkitError
try:
    load_splits(Dataset.model_validate({"source": "keras", "name": "mnist"}), data_dir=sys.argv[1], seed=0)
except ExpkitError as exc:
    print(exc)
    sys.exit(3)
print("LOADED")
"""


@pytest.mark.slow
def test_missing_dataset_offline_names_env_var_and_path(tmp_path: Path, blocked_downloads: BlockedDownloads) -> None:
    """Holds with and without network: the download goes to a local proxy that refuses it (see tests/README.md)."""
    data_dir, keras_home = tmp_path / "data", tmp_path / "keras_home"
    data_dir.mkdir()
    keras_home.mkdir()
    env = expkit_env(KERAS_HOME=str(keras_home), **blocked_downloads.env)
    command = [sys.executable, "-c", OFFLINE_MNIST, str(data_dir)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "dataset 'mnist' not found locally and the download failed" in done.stdout
    assert "EXPKIT_DATA_DIR" in done.stdout
    assert str(data_dir / "mnist.npz") in done.stdout
    assert not list(data_dir.iterdir())
    assert not list((keras_home / "datasets").glob("mnist*"))  # no partial download left in the cache
    assert blocked_downloads.requests == ["CONNECT storage.googleapis.com:443 HTTP/1.0"]  # Keras tried, and we refused


# --- scikit-learn ---------------------------------------------------------------------------


def test_sklearn_digits_stratified_split() -> None:
    from sklearn.datasets import load_digits

    (x_train, y_train), (x_test, y_test) = get_loader("sklearn", "digits")(test_fraction=0.2, seed=42)
    assert x_train.shape == (1437, 64) and x_test.shape == (360, 64)
    full_counts = np.bincount(load_digits().target, minlength=10)
    test_counts = np.bincount(y_test, minlength=10)
    assert np.all(np.abs(test_counts - 0.2 * full_counts) <= 1)
    np.testing.assert_array_equal(np.bincount(y_train, minlength=10) + test_counts, full_counts)
    # Same seed, same split; another seed, another split.
    (_, y_again), _ = get_loader("sklearn", "digits")(test_fraction=0.2, seed=42)
    (_, y_other), _ = get_loader("sklearn", "digits")(test_fraction=0.2, seed=7)
    np.testing.assert_array_equal(y_again, y_train)
    assert not np.array_equal(y_other, y_train)


def test_sklearn_digits_through_load_splits() -> None:
    ds = Dataset.model_validate(
        {"source": "sklearn", "name": "digits", "preprocess": {"x": [{"op": "scale", "divisor": 16.0}]}, "validation": {"holdout": 0.2}}
    )
    splits = load_splits(ds, data_dir=None, seed=42)
    assert len(splits.x_test) == 360 and len(splits.x_val) == int(1437 * 0.2) and len(splits.x_train) == 1437 - 287
    assert splits.x_train.dtype == np.float32 and splits.x_train.max() <= 1.0
