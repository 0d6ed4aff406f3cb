"""The image pipeline: image files (listed by expkit.data.image_dir) streamed with tf.data.

Only file names and labels are held in memory; every batch is read, decoded, resized and rescaled
on the fly (optionally cached in memory or on disk), so memory stays flat in the number of images.
Training order is a permutation seeded by (seed, epoch): a resumed run sees the same batches.
Augmentation (Keras preprocessing layers from `dataset.augment`) runs in this input pipeline, on
the CPU, on training batches only; the trained model therefore holds no augmentation layers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from expkit.data.image_cache import claim_cache
from expkit.data.splits import DatasetRecord, Feeds, Splits
from expkit.errors import ExpkitError

FLOAT_BATCHES_IN_FLIGHT = 2


@dataclass
class ImageFiles:
    """One split: image paths and their encoded labels (after dataset.preprocess.y)."""

    paths: list[str]
    labels: np.ndarray


@dataclass
class ImageSplits:
    """Streamed image data. `y_*` are the encoded labels; `x_*` stay on disk."""

    train: ImageFiles
    test: ImageFiles
    validation: ImageFiles | None
    class_names: list[str]
    image_size: tuple[int, int]
    channels: int
    divisor: float | None = None
    cache: str | None = None
    augment: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    fingerprint: str = ""
    # Training batches stream endlessly (fit needs steps_per_epoch); a subclass whose data ends with each epoch says so.
    epoch_ends: bool = False
    # The dataset's name and where it was read from (set by load_splits), for the dataset record.
    name: str = ""
    origin: str = ""
    feature_types: dict[str, Any] | None = None  # typed raw columns: a streamed table has them (expkit.data.table_stream)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.image_size, self.channels)

    # --- the common interface (expkit.data.splits.DataSplits, Feeds): streams feed themselves ------------------

    @property
    def has_validation(self) -> bool:
        return self.validation is not None

    def for_model(self, model: Any) -> ImageSplits:
        return self

    def feeds(self, arrays: Callable[[Splits], Feeds]) -> ImageSplits:
        return self

    def feed(self, name: str, batch_size: int, **_: Any) -> Any:
        return self.batches(name, batch_size, train=name == "train")

    def training_feed(
        self, batch_size: int, *, shuffle: bool, seed: int, epoch: int, epochs: int, **_: Any
    ) -> tuple[Any, int | None, list[Any]]:
        """Shuffled in the order seeded by (seed, epoch); steps_per_epoch unless the data ends with each epoch (a table)."""
        data = self.batches("train", batch_size, train=True, shuffle=shuffle, seed=seed, first_epoch=epoch, epochs=epochs)
        return data, None if self.epoch_ends else self.steps("train", batch_size), []

    def input_example(self, count: int) -> np.ndarray:
        return self.sample("test", count)

    def write_files(self, output_dir: Path, *, seed: int, preview: bool = False) -> None:
        """classes.json (class names, skipped images) for people, and the augmentation preview when asked."""
        info = {"class_names": self.class_names, "skipped_images": self.skipped}
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "classes.json").write_text(json.dumps(info, indent=1) + "\n")
        if preview:
            from expkit.data.image_preview import save_augmented_grid

            save_augmented_grid(self, output_dir / "plots" / "augmented_samples.png", seed)

    def record(self, output_dir: Path) -> DatasetRecord:
        """Streamed: no sizes (not logged as a dataset input); the class names and skipped images as params."""
        params = {"dataset.class_names": ",".join(self.class_names), "dataset.skipped_images": len(self.skipped)}
        return DatasetRecord(self.name, self.origin, self.fingerprint, {}, None, params, [output_dir / "classes.json"])

    @property
    def y_train(self) -> np.ndarray:
        return self.train.labels

    @property
    def y_test(self) -> np.ndarray:
        return self.test.labels

    @property
    def y_val(self) -> np.ndarray | None:
        return self.validation.labels if self.validation else None

    @property
    def x_val(self) -> ImageFiles | None:
        """Truthy when there is validation data (the runner asks `x_val is not None`)."""
        return self.validation

    def split(self, name: str) -> ImageFiles:
        part = {"train": self.train, "test": self.test, "validation": self.validation}[name]
        if part is None:
            raise ExpkitError(f"this image folder has no {name} split", key="dataset.path")
        return part

    def steps(self, name: str, batch_size: int) -> int:
        return math.ceil(len(self.split(name).paths) / batch_size)

    def batches(
        self,
        name: str,
        batch_size: int,
        *,
        train: bool = False,
        shuffle: bool = False,
        seed: int = 0,
        first_epoch: int = 0,
        epochs: int = 1,
        labels: bool = True,
    ) -> Any:
        """A tf.data.Dataset of (images, labels) batches of split `name`.

        With `train`, the dataset holds epochs first_epoch..epochs-1 back to back (pass steps_per_epoch
        to fit()), each in the order seeded by (seed, epoch) if `shuffle`, and augmented. Otherwise
        one pass in file order, never augmented.
        """
        import tensorflow as tf

        part = self.split(name)
        autotune = tf.data.AUTOTUNE
        paths = tf.constant(part.paths)
        targets = tf.constant(part.labels)
        load = self._loader()
        n = len(part.paths)
        steps = self.steps(name, batch_size)

        if train and self.cache:  # decoded images cached once; epoch order from a seeded, reshuffling buffer
            cached = tf.data.Dataset.from_tensor_slices(paths).map(load, num_parallel_calls=autotune).cache(self._cache_file(name))
            data = tf.data.Dataset.zip(cached, tf.data.Dataset.from_tensor_slices(targets))
            if shuffle:
                data = data.shuffle(n, seed=seed, reshuffle_each_iteration=True)
            data = data.batch(batch_size).repeat().skip(first_epoch * steps).take((epochs - first_epoch) * steps)
        elif train:

            def one_epoch(epoch: Any) -> Any:
                order = tf.range(n)
                if shuffle:
                    order = tf.random.experimental.stateless_shuffle(order, seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
                files = tf.data.Dataset.from_tensor_slices((tf.gather(paths, order), tf.gather(targets, order)))
                return files.map(lambda p, y: (load(p), y), num_parallel_calls=autotune).batch(batch_size)

            data = tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch)
        else:
            files = tf.data.Dataset.from_tensor_slices((paths, targets))
            data = files.map(lambda p, y: (load(p), y), num_parallel_calls=autotune)
            if self.cache:
                data = data.cache(self._cache_file(name))
            data = data.batch(batch_size)
        augment = self._augmenter(seed) if (train and self.augment) else None
        # Fixed, small buffers of float batches (an autotuned prefetch grows with the run's length, not with need).
        data = data.map(self._finish(augment), num_parallel_calls=FLOAT_BATCHES_IN_FLIGHT)
        if not labels:
            data = data.map(lambda x, y: x)
        return data.prefetch(FLOAT_BATCHES_IN_FLIGHT)

    def sample(self, name: str, count: int) -> np.ndarray:
        """The first `count` images of a split as model inputs (numpy), e.g. an input example."""
        batch = next(iter(self.batches(name, count, labels=False)))
        return np.asarray(batch)

    def _loader(self) -> Any:
        import tensorflow as tf

        height, width = self.image_size
        channels = self.channels
        compact = bool(self.cache)  # cached images are stored as uint8 (4x smaller); otherwise stay float32

        def load(path: Any) -> Any:
            image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
            image.set_shape([None, None, channels])
            image = tf.image.resize(image, (height, width), method="bilinear")
            return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8) if compact else image

        return load

    def _augmenter(self, seed: int) -> Any:
        from expkit.models.builder import LAYERS
        from expkit.registry import build_component

        layers = []
        for i, spec in enumerate(self.augment):
            spec = dict(spec)
            spec.setdefault("seed", seed + i)
            layers.append(build_component(spec, LAYERS, key=f"dataset.augment.{i}"))

        def apply(images: Any) -> Any:
            for layer in layers:
                images = layer(images, training=True)
            return images

        return apply

    def _finish(self, augment: Any) -> Any:
        """A batch of 0..255 pixels -> float32 model input: augmentation (training only), then rescaling."""
        import tensorflow as tf

        divisor = self.divisor

        def finish(images: Any, labels: Any) -> Any:
            images = tf.cast(images, tf.float32)
            if augment is not None:
                images = augment(images)
            if divisor:
                images = images / divisor
            return images, tf.cast(labels, tf.float32)

        return finish

    def _cache_file(self, name: str) -> str:
        if self.cache == "memory":
            return ""
        folder = Path(self.cache or "").expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        prefix = folder / f"{self.fingerprint}-{name}-{self.image_size[0]}x{self.image_size[1]}x{self.channels}"
        claim_cache(prefix)
        return str(prefix)
