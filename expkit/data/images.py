"""Image folders streamed with tf.data: `<path>/train/ [validation/] test/`, one sub-folder per class.

Only file names and labels are held in memory; every batch is read, decoded, resized and rescaled
on the fly (optionally cached in memory or on disk), so memory stays flat in the number of images.
Training order is a permutation seeded by (seed, epoch): a resumed run sees the same batches.
Augmentation (Keras preprocessing layers from `dataset.augment`) runs in this input pipeline, on
the CPU, on training batches only; the trained model therefore holds no augmentation layers.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from expkit.data.preprocess import apply_steps
from expkit.errors import ExpkitError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}
SPLIT_NAMES = ("train", "validation", "test")
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

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.image_size, self.channels)

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


def claim_cache(prefix: Path) -> None:
    """Make this process the writer of the tf.data disk cache at `prefix`.

    tf.data leaves `<prefix>_0.lockfile` behind when a run is killed while writing the cache, and every later run
    then fails with AlreadyExistsError. The writer's pid is kept beside the cache (`<prefix>.owner`): a lock whose
    writer is gone is removed with its partial data; a lock held by a live run on this host is a clear error.
    """
    import socket

    owner_file = prefix.with_name(prefix.name + ".owner")
    host = socket.gethostname()
    locks = sorted(prefix.parent.glob(f"{prefix.name}_*.lockfile"))
    if locks:
        owner_host, _, owner_pid = (owner_file.read_text().strip() if owner_file.is_file() else "").partition(" ")
        pid = int(owner_pid) if owner_pid.isdigit() else None
        if pid is not None and pid != os.getpid() and owner_host == host and pid_alive(pid):
            raise ExpkitError(
                f"run pid {pid} is writing the image cache {locks[0]}",
                key="dataset.cache",
                hint="wait for that run to finish, or give this one another cache folder",
            )
        for stale in [*locks, *prefix.parent.glob(f"{prefix.name}_*.tempstate*")]:
            stale.unlink(missing_ok=True)
        print(f"removed the stale lock of an interrupted run's image cache: {locks[0]}", file=sys.stderr)
    owner_file.write_text(f"{host} {os.getpid()}\n")


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


# --- reading the folder tree -----------------------------------------------------------------


def class_folders(split_dir: Path) -> list[str]:
    return sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))


def image_problem(path: Path) -> str | None:
    """Why `path` cannot be used as an image (None if it decodes). JPEGs are decoded at 1/8 scale, which is fast."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.format not in {"PNG", "JPEG", "BMP", "GIF"}:
                return f"unsupported format {img.format}"
            if img.format == "JPEG":
                img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
    except Exception as exc:  # PIL raises many types for broken files
        return f"{exc.__class__.__name__}: {exc}"
    return None


def list_split(split_dir: Path, classes: list[str], on_bad_image: str, skipped: list[str]) -> tuple[list[str], np.ndarray]:
    """Image paths below split_dir/<class>/ (sorted) and their class indices; broken images fail or are skipped."""
    paths, labels = [], []
    for index, name in enumerate(classes):
        folder = split_dir / name
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        good = 0
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # PIL decodes outside the GIL
            problems = list(pool.map(image_problem, files))
        for file, problem in zip(files, problems, strict=True):
            if problem is not None:
                if on_bad_image != "skip":
                    raise ExpkitError(
                        f"cannot read image {file}: {problem}",
                        key="dataset.path",
                        hint="remove or replace the broken file, or set dataset.on_bad_image=skip",
                    )
                skipped.append(str(file))
                continue
            paths.append(str(file))
            labels.append(index)
            good += 1
        if not good:
            raise ExpkitError(
                f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})",
                key="dataset.path",
                hint="every class needs images in every split",
            )
    return paths, np.asarray(labels, dtype=np.int64)


def folder_fingerprint(root: Path, splits: dict[str, list[str]]) -> str:
    """sha256 over relative path, size and mtime of every image: cheap, and changes when the data does."""
    digest = hashlib.sha256()
    for name, paths in splits.items():
        digest.update(name.encode())
        for p in paths:
            stat = Path(p).stat()
            digest.update(f"{Path(p).relative_to(root)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def check_image_folders(dataset: Any) -> tuple[Path, list[str], list[str]]:
    """(root, class names, splits present): the folder layout of `dataset`, checked without reading an image
    (also the pre-flight's check, before a run exists)."""
    if not dataset.path:
        raise ExpkitError("the image_dir source needs dataset.path: the folder holding train/ and test/", key="dataset.path")
    if not dataset.image_size:
        raise ExpkitError(
            "the image_dir source needs dataset.image_size: [height, width]", key="dataset.image_size", hint="e.g. [150, 150]"
        )
    root = Path(dataset.path).expanduser()
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise ExpkitError(
            f"{train_dir} does not exist", key="dataset.path", hint="lay the images out as train/<class>/*.jpg, test/<class>/*.jpg"
        )
    classes = class_folders(train_dir)
    if len(classes) < 2:
        raise ExpkitError(
            f"{train_dir} has {len(classes)} class folder(s){': ' + classes[0] if classes else ''}; a classifier needs at least 2",
            key="dataset.path",
            hint="put each class's images in its own sub-folder, e.g. train/cats and train/dogs",
        )
    if not (root / "test").is_dir():
        raise ExpkitError(f"{root / 'test'} does not exist", key="dataset.path", hint="test data is used once, for the final evaluation")
    present = [s for s in SPLIT_NAMES if (root / s).is_dir()]
    for split in present[1:]:
        other = class_folders(root / split)
        if other != classes:
            raise ExpkitError(
                f"{root / split} has class folders {other}, but {train_dir} has {classes}",
                key="dataset.path",
                hint="every split needs the same class folders",
            )
    for i, step in enumerate(dataset.preprocess.x):
        if step.op != "scale":
            raise ExpkitError(
                f"image_dir streams images and supports only scale steps, not '{step.op}'",
                key=f"dataset.preprocess.x.{i}",
                hint="resize with dataset.image_size; other steps belong in the model",
            )
    return root, classes, present


def load_image_folders(dataset: Any, *, seed: int) -> ImageSplits:
    """Index the folder tree of `dataset` (the validated config node) without reading pixels into memory."""
    root, classes, present = check_image_folders(dataset)
    skipped: list[str] = []
    listed = {s: list_split(root / s, classes, dataset.on_bad_image, skipped) for s in present}
    if skipped:
        print(f"skipped {len(skipped)} unreadable image(s): {', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}", file=sys.stderr)
    if dataset.max_train_samples:  # a seeded subset, so every class stays represented
        keep = np.sort(np.random.default_rng(seed).permutation(len(listed["train"][0]))[: dataset.max_train_samples])
        listed["train"] = ([listed["train"][0][i] for i in keep], listed["train"][1][keep])
    if dataset.max_test_samples:
        keep = np.sort(np.random.default_rng(seed).permutation(len(listed["test"][0]))[: dataset.max_test_samples])
        listed["test"] = ([listed["test"][0][i] for i in keep], listed["test"][1][keep])

    divisor = None
    for step in dataset.preprocess.x:
        divisor = (divisor or 1.0) * step.divisor
    train_y, rest_y = apply_steps(dataset.preprocess.y, listed["train"][1], [listed[s][1] for s in present[1:]], "dataset.preprocess.y")
    encoded = dict(zip(present, [train_y, *rest_y], strict=True))
    files = {s: ImageFiles(listed[s][0], np.asarray(encoded[s])) for s in present}
    return ImageSplits(
        train=files["train"],
        test=files["test"],
        validation=files.get("validation"),
        class_names=classes,
        image_size=(dataset.image_size[0], dataset.image_size[1]),
        channels=1 if dataset.color_mode == "grayscale" else 3,
        divisor=divisor,
        cache=dataset.cache,
        augment=list(dataset.augment),
        skipped=skipped,
        fingerprint=folder_fingerprint(root, {s: listed[s][0] for s in present}),
    )


def save_augmented_grid(splits: ImageSplits, path: Path, seed: int, rows: int = 3, cols: int = 4) -> Path:
    """A PNG grid: the first training image, then augmented versions of it as training batches draw them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tensorflow as tf

    first = ImageSplits(**{**splits.__dict__, "train": ImageFiles(splits.train.paths[:1], splits.train.labels[:1]), "cache": None})
    plain = first.sample("train", 1)[0]
    augment = first._augmenter(seed)
    images = [plain] + [
        np.asarray(augment(tf.constant(plain[None] * (first.divisor or 1.0)))[0]) / (first.divisor or 1.0) for _ in range(rows * cols - 1)
    ]
    fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2 * rows))
    scale = 1.0 if first.divisor else 255.0
    for i, (ax, image) in enumerate(zip(axes.ravel(), images, strict=True)):
        ax.imshow(np.clip(image / scale, 0, 1).squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
        ax.set_title("original" if i == 0 else f"augmented {i}", fontsize=8)
        ax.axis("off")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
