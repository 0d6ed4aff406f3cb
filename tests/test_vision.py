"""Vision: convnet presets, streamed image folders, augmentation, feature extraction, multi-phase fine-tuning."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from PIL import Image

from expkit.config import validate_config
from expkit.config.schema import ExperimentConfig
from expkit.data.pipeline import load_splits
from expkit.errors import ExpkitError
from expkit.models.builder import build_model
from expkit.training.phases import all_layers
from expkit.training.runner import feed, train_and_evaluate
from tests.conftest import REPO, compose_config, mlflow_runs, output_dirs, run_inprocess

FAST = ("trainer.verbose=0", "tracking.log_model=false", "tracking.tensorboard.enabled=false")


def write_jpeg_tree(root: Path, per_class: int = 6, size: int = 40, splits: tuple[str, ...] = ("train", "validation", "test")) -> Path:
    """cats are red-ish, dogs blue-ish, with noise and a bright square at a random place (so flips and shifts show)."""
    rng = np.random.default_rng(0)
    for split in splits:
        for c, name in enumerate(("cats", "dogs")):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
                pixels[..., 0 if c == 0 else 2] += 150
                y, x = rng.integers(0, size - 8, 2)
                pixels[y : y + 8, x : x + 8] = 255
                Image.fromarray(pixels).save(folder / f"{name}.{i}.jpg", quality=90)
    return root


def preset(name: str, tmp_path: Path, *overrides: str) -> ExperimentConfig:
    """A preset composed and validated in-process, as `expkit train` would see it."""
    root = tmp_path / "run"
    return validate_config(compose_config(f"+experiment={name}", f"paths.root_dir={root}", f"paths.output_dir={root}/out", *overrides))


@pytest.mark.parametrize(
    ("name", "input_shape", "params"),
    [
        ("mnist_convnet", (28, 28, 1), 93_322),
        ("torres_mnist_convnet", (28, 28, 1), 62_346),
        ("cats_vs_dogs_small", (150, 150, 3), 3_453_121),
    ],
)
def test_convnet_presets_have_the_book_parameter_counts(tmp_path: Path, name: str, input_shape: tuple[int, ...], params: int) -> None:
    config = preset(name, tmp_path)
    model = build_model(config.model.layers, input_shape)
    assert model.count_params() == params


# --- streaming -------------------------------------------------------------------------------


def image_config(tmp_path: Path, root: Path, *overrides: str) -> ExperimentConfig:
    return preset("cats_vs_dogs_small", tmp_path, f"dataset.path={root}", "dataset.image_size=[32,32]", *overrides)


def epoch_labels(splits: Any, first: int, epochs: int, seed: int = 42) -> list[list[float]]:
    steps = splits.steps("train", 4)
    batches = [
        np.asarray(y).tolist() for _, y in splits.batches("train", 4, train=True, shuffle=True, seed=seed, first_epoch=first, epochs=epochs)
    ]
    return [[label for batch in batches[i * steps : (i + 1) * steps] for label in batch] for i in range(epochs - first)]


@pytest.mark.parametrize("cache", ["null", "memory", "disk"])
def test_training_order_is_seeded_per_epoch_so_a_resumed_run_sees_the_same_batches(tmp_path: Path, cache: str) -> None:
    root = write_jpeg_tree(tmp_path / "pets", per_class=10, splits=("train", "test"))
    cache_dir = tmp_path / "image_cache"
    splits = load_splits(
        image_config(tmp_path, root, f"dataset.cache={cache_dir if cache == 'disk' else cache}").dataset, data_dir=None, seed=42
    )
    full = epoch_labels(splits, 0, 3)
    assert any(cache_dir.glob("*-train-*")) == (cache == "disk")
    assert len({tuple(e) for e in full}) == 3  # a new order every epoch
    assert epoch_labels(splits, 2, 3) == full[2:]  # resuming at epoch 2 draws epoch 2's order
    assert epoch_labels(splits, 0, 3, seed=7) != full


@pytest.mark.slow
def test_a_disk_cache_left_locked_by_a_killed_run_is_recovered_but_a_live_writer_is_refused(tmp_path: Path) -> None:
    root = write_jpeg_tree(tmp_path / "pets", per_class=150, splits=("train", "test"))
    cache_dir = tmp_path / "image_cache"
    config = image_config(tmp_path, root, f"dataset.cache={cache_dir}").dataset
    # A process killed (os._exit: no clean-up) while it writes the train cache leaves tf.data's lockfile behind.
    killed = f"""
import os, threading, time
from pathlib import Path
from expkit.data.pipeline import load_splits
from tests.test_vision import image_config
config = image_config(Path({str(tmp_path)!r}), Path({str(root)!r}), "dataset.cache={cache_dir}").dataset
splits = load_splits(config, data_dir=None, seed=42)
def kill_once_locked():
    while not list(Path({str(cache_dir)!r}).glob("*_0.lockfile")):
        time.sleep(0.002)
    os._exit(9)
threading.Thread(target=kill_once_locked, daemon=True).start()
next(iter(splits.batches("train", 2, train=True, shuffle=True, seed=42)))
"""
    subprocess.run([sys.executable, "-c", killed], cwd=REPO, check=False, timeout=300, capture_output=True)
    assert list(cache_dir.glob("*-train-*_0.lockfile")), sorted(p.name for p in cache_dir.iterdir())
    splits = load_splits(config, data_dir=None, seed=42)
    assert len(epoch_labels(splits, 0, 2)) == 2  # tf.data would raise AlreadyExistsError on the stale lock
    assert not list(cache_dir.glob("*.lockfile")) and list(cache_dir.glob("*-train-*.index"))  # the cache completed
    # While a live run (here: this test's parent process) owns a lock, a second run is refused with the key to change.
    (lock,) = [*cache_dir.glob("*-train-*.owner")]
    prefix = lock.with_suffix("")
    Path(f"{prefix}_0.lockfile").write_text("Created at: 0")
    lock.write_text(f"{socket.gethostname()} {os.getppid()}\n")
    with pytest.raises(ExpkitError, match="is writing the image cache") as refused:
        load_splits(config, data_dir=None, seed=42).batches("train", 2, train=True, shuffle=True, seed=42)
    assert refused.value.key == "dataset.cache"


def test_augmentation_changes_training_batches_but_never_validation_or_test(tmp_path: Path) -> None:
    root = write_jpeg_tree(tmp_path / "pets", per_class=4)
    plain = load_splits(image_config(tmp_path, root).dataset, data_dir=None, seed=42)
    augmented = load_splits(
        preset("cats_vs_dogs_augmented", tmp_path, f"dataset.path={root}", "dataset.image_size=[32,32]").dataset, data_dir=None, seed=42
    )
    assert augmented.augment and not plain.augment

    def two_epochs(splits: Any) -> tuple[np.ndarray, np.ndarray]:
        batches = [np.asarray(x) for x, _ in splits.batches("train", 8, train=True, shuffle=False, epochs=2)]
        return batches[0], batches[1]  # the same 8 images, in file order, in epochs 0 and 1

    first, second = two_epochs(augmented)
    assert not np.allclose(first, second, atol=1e-3)
    np.testing.assert_array_equal(*two_epochs(plain))

    keras.utils.set_random_seed(0)
    model = build_model(
        [{"type": "Conv2D", "filters": 2, "kernel_size": 3}, {"type": "Flatten"}, {"type": "Dense", "units": 1}], (32, 32, 3)
    )
    for split in ("validation", "test"):
        with_aug = model.predict(feed(augmented, split, 4), verbose=0)
        without = model.predict(feed(plain, split, 4), verbose=0)
        np.testing.assert_array_equal(with_aug, without)


def test_mismatched_class_folders_and_unknown_augmentation_layers_are_errors(tmp_path: Path) -> None:
    from expkit.errors import ExpkitError

    root = write_jpeg_tree(tmp_path / "pets", per_class=2, splits=("train", "test"))
    (root / "test" / "dogs").rename(root / "test" / "dog")
    with pytest.raises(ExpkitError, match=r"test has class folders \['cats', 'dog'\], but .*train has \['cats', 'dogs'\]"):
        load_splits(image_config(tmp_path, root).dataset, data_dir=None, seed=0)
    with pytest.raises(ExpkitError, match=r"dataset\.augment\.0\.type: unknown layer 'RandomFlop'"):
        image_config(tmp_path, root, "dataset.augment=[{type: RandomFlop}]")


# --- through the CLI ---------------------------------------------------------------------------


@pytest.mark.slow
def test_augmented_preset_trains_and_a_corrupt_jpeg_fails_or_is_skipped(workdir: Path) -> None:
    root = write_jpeg_tree(workdir / "pets", per_class=6, size=48)
    broken = root / "train" / "dogs" / "dogs.3.jpg"
    broken.write_bytes(broken.read_bytes()[:200])  # truncated mid-scan
    args = ("train", "+experiment=cats_vs_dogs_augmented", f"dataset.path={root}", "dataset.image_size=[48,48]", "trainer.epochs=2", *FAST)

    failed = run_inprocess(*args, cwd=workdir)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert f"cannot read image {broken}" in failed.stderr and "on_bad_image=skip" in failed.stderr

    done = run_inprocess(*args, "dataset.on_bad_image=skip", "dataset.augment_preview=true", cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert f"skipped 1 unreadable image(s): {broken}" in done.stderr
    runs = {r.info.status: r for r in mlflow_runs(workdir, "cats_vs_dogs_augmented")}
    assert set(runs) == {"FAILED", "FINISHED"}
    run = runs["FINISHED"]
    assert run.data.params["dataset.class_names"] == "cats,dogs" and run.data.params["dataset.skipped_images"] == "1"
    assert "val_accuracy" in run.data.metrics and "test_accuracy" in run.data.metrics
    import mlflow

    artifacts = {a.path for a in mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").list_artifacts(run.info.run_id, "plots")}
    assert "plots/augmented_samples.png" in artifacts


@pytest.mark.slow
def test_feature_extraction_caches_features_and_trains_only_the_head(workdir: Path) -> None:
    root = write_jpeg_tree(workdir / "pets", per_class=4, size=32)
    args = (
        "train",
        "+experiment=cats_vs_dogs_vgg16_features",
        f"dataset.path={root}",
        "dataset.image_size=[32,32]",
        "features.weights=null",
        "trainer.epochs=1",
        "tracking=none",
        *FAST[:1],
    )
    first = run_inprocess(*args, cwd=workdir)
    assert first.returncode == 0, first.stderr
    assert "features: extracting VGG16 features once per split" in first.stderr
    second = run_inprocess(*args, cwd=workdir)
    assert second.returncode == 0, second.stderr
    assert "features: reusing cached VGG16 features" in second.stderr and "extracting" not in second.stderr
    for run_dir in output_dirs(workdir):
        summary = (run_dir / "model_summary.txt").read_text()
        # VGG16 turns 32x32x3 into 1x1x512; head: 512*256+256 + 256*1+1 weights, all trainable.
        assert "Trainable params: 131,585" in summary and "Non-trainable params: 0" in summary


# --- multi-phase fine-tuning ---------------------------------------------------------------------


class PhaseProbe(keras.callbacks.Callback):
    """Snapshots the base's weights before training and after each epoch, and which weight layers are trainable."""

    def __init__(self) -> None:
        super().__init__()
        self.weights: list[list[np.ndarray]] = []
        self.trainable: list[list[str]] = []

    def base(self) -> Any:
        return self.model.get_layer("vgg16")

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if not self.weights:
            self.weights.append([np.array(w) for w in self.base().get_weights()])

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.weights.append([np.array(w) for w in self.base().get_weights()])
        self.trainable.append(
            [layer.name for layer in all_layers(self.model) if layer.trainable_weights and not getattr(layer, "layers", None)]
        )


@pytest.mark.slow  # VGG16's 14.7 M weights; the phase logic is in the quick set through the resume tests below
def test_finetune_phases_freeze_then_unfreeze_from_the_named_layer(tmp_path: Path) -> None:
    root = write_jpeg_tree(tmp_path / "pets", per_class=3, size=32)
    config = preset(
        "cats_vs_dogs_vgg16_finetune",
        tmp_path,
        f"dataset.path={root}",
        "dataset.image_size=[32,32]",
        "model.layers.0.weights=null",
        "phases.0.epochs=1",
        "phases.1.epochs=1",
        "trainer.verbose=0",
        "tracking.tensorboard.enabled=false",
    )
    splits = load_splits(config.dataset, data_dir=None, seed=config.seed)
    probe = PhaseProbe()
    outcome = train_and_evaluate(config, splits, tmp_path / "out", [probe])
    before, after_phase1, after_phase2 = probe.weights
    assert all(np.array_equal(a, b) for a, b in zip(before, after_phase1, strict=True))  # frozen base: bit-identical
    assert not all(np.array_equal(a, b) for a, b in zip(after_phase1, after_phase2, strict=True))
    assert probe.trainable[0] == ["dense", "dense_1"]
    assert probe.trainable[1] == ["block5_conv1", "block5_conv2", "block5_conv3", "dense", "dense_1"]
    assert len(outcome.history["loss"]) == 2


@pytest.mark.slow
def test_finetune_preset_logs_both_phases_on_one_epoch_axis(workdir: Path) -> None:
    root = write_jpeg_tree(workdir / "pets", per_class=3, size=32)
    done = run_inprocess(
        "train",
        "+experiment=cats_vs_dogs_vgg16_finetune",
        f"dataset.path={root}",
        "dataset.image_size=[32,32]",
        "model.layers.0.weights=null",
        "phases.0.epochs=2",
        "phases.1.epochs=1",
        *FAST,
        cwd=workdir,
    )
    assert done.returncode == 0, done.stderr
    (run,) = mlflow_runs(workdir, "cats_vs_dogs_vgg16_finetune")
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss")) == [0, 1, 2]
    rates = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "learning_rate")}
    assert rates[0] == pytest.approx(2e-5) and rates[2] == pytest.approx(1e-5)


class StopAfter(keras.callbacks.Callback):
    """Asks training to stop (as SIGTERM would) once epoch `last` is complete."""

    def __init__(self, stop: Any, last: int) -> None:
        super().__init__()
        self.stop, self.last = stop, last

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch == self.last:
            self.stop.signum = signal.SIGTERM


@pytest.fixture(scope="module")
def two_phases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Any]:
    """A small two-phase fine-tuning run, trained once without interruption: (config, splits, outcome)."""
    tmp_path = tmp_path_factory.mktemp("two-phases")
    root = write_jpeg_tree(tmp_path / "pets", per_class=2, size=32, splits=("train", "test"))
    config = preset(
        "cats_vs_dogs_vgg16_finetune",
        tmp_path,
        f"dataset.path={root}",
        "dataset.image_size=[32,32]",
        "dataset.augment=[]",  # augmentation draws fresh random numbers after a restart
        # A small stand-in for VGG16 (same phase logic, a fraction of the cost): conv_b on is unfrozen in phase 2.
        "model.layers=[{type: Conv2D, filters: 4, kernel_size: 3, name: conv_a, trainable: false},"
        " {type: Conv2D, filters: 4, kernel_size: 3, name: conv_b, trainable: false}, {type: Flatten},"
        " {type: Dense, units: 1, activation: sigmoid}]",
        "phases.0.epochs=1",
        "phases.1.epochs=2",
        "phases.1.trainable_from=conv_b",
        "trainer.batch_size=2",
        "trainer.deterministic=true",
        "trainer.verbose=0",
        "tracking.tensorboard.enabled=false",
    )
    splits = load_splits(config.dataset, data_dir=None, seed=config.seed)
    return config, splits, train_and_evaluate(config, splits, tmp_path / "whole")


@pytest.mark.parametrize(
    "stop_after", [pytest.param(0, marks=pytest.mark.slow), 1], ids=["at_the_phase_boundary", "inside_phase_2"]
)  # quick: a stop inside phase 2, so the resumed run must rebuild phase 2's trainable layers and optimizer state
def test_resume_inside_any_phase_matches_an_uninterrupted_run(two_phases: tuple[Any, Any, Any], tmp_path: Path, stop_after: int) -> None:
    from expkit.training.resume import Interrupted, StopRequest, TrainingState

    config, splits, whole = two_phases
    stop = StopRequest()
    with pytest.raises(Interrupted):
        train_and_evaluate(config, splits, tmp_path / "cut", [StopAfter(stop, stop_after)], stop=stop)
    state = TrainingState.load(tmp_path / "cut" / "checkpoints" / "resume")
    assert state is not None and state.epoch == stop_after
    resumed = train_and_evaluate(config, splits, tmp_path / "cut", resume_from=state)
    assert len(resumed.history["loss"]) == 3
    np.testing.assert_allclose(resumed.history["loss"], whole.history["loss"], rtol=1e-6)
    for a, b in zip(resumed.model.get_weights(), whole.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_trainable_is_checked_by_validate(tmp_path: Path) -> None:
    from expkit.errors import ExpkitError

    config = preset("cats_vs_dogs_vgg16_finetune", tmp_path, "model.layers.0.weights=null")
    assert config.model.layers[0]["trainable"] is False and config.model.layers[0]["type"] == "VGG16"
    with pytest.raises(ExpkitError, match=r"model\.layers\.0\.trainable: must be true or false, got 'no'"):
        preset("cats_vs_dogs_vgg16_finetune", tmp_path, "model.layers.0.trainable=no")
    with pytest.raises(ExpkitError, match=r"model\.layers\.0\.include_tp: VGG16 has no argument 'include_tp'"):
        preset("cats_vs_dogs_vgg16_finetune", tmp_path, "+model.layers.0.include_tp=false")
