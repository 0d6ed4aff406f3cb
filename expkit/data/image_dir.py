"""`dataset.source: image_dir`: image folders `<path>/train/ [validation/] test/`, one sub-folder per class.

This module is the source's registry entry, its checks (the folder layout, before any run is recorded) and the
listing of the files (paths and labels; broken images fail or are skipped). The files are then streamed by
`expkit.data.images.ImageSplits`. Imports nothing heavy at module level (the source registry is read by validation).
"""

from __future__ import annotations

import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from expkit.config.schema import Strict
from expkit.data.named import Source, add_source
from expkit.errors import ExpkitError

if TYPE_CHECKING:
    import numpy as np

    from expkit.data.images import ImageSplits

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}
SPLIT_NAMES = ("train", "validation", "test")


class ImageDirOptions(Strict):
    """Shared `dataset.*` keys only: how images are sized, cached, checked, augmented and cut."""

    image_size: Any = None
    color_mode: str = "rgb"
    cache: str | None = None
    on_bad_image: str = "error"
    augment: list[dict[str, Any]] = Field(default_factory=list)
    preprocess: Any = None
    validation: Any = None
    max_train_samples: int | None = None
    max_test_samples: int | None = None


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
    import numpy as np

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


def check_image_folders(options: ImageDirOptions, path: str | None) -> tuple[Path, list[str], list[str]]:
    """(root, class names, splits present): the folder layout at `path`, checked without reading an image
    (also the pre-flight's check, before a run exists)."""
    if not path:
        raise ExpkitError("the image_dir source needs dataset.path: the folder holding train/ and test/", key="dataset.path")
    if not options.image_size:
        raise ExpkitError(
            "the image_dir source needs dataset.image_size: [height, width]", key="dataset.image_size", hint="e.g. [150, 150]"
        )
    root = Path(path).expanduser()
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
    for i, step in enumerate(options.preprocess.x):
        if step.op != "scale":
            raise ExpkitError(
                f"image_dir streams images and supports only scale steps, not '{step.op}'",
                key=f"dataset.preprocess.x.{i}",
                hint="resize with dataset.image_size; other steps belong in the model",
            )
    return root, classes, present


def check_validation(options: ImageDirOptions, fold: int | None = None) -> None:
    v = options.validation
    if any(value is not None for value in (v.holdout, v.split, v.folds, fold)):
        raise ExpkitError(
            "image_dir takes its validation data from the validation/ folder", key="dataset.validation", hint="remove the setting"
        )


def check_image_dir(options: ImageDirOptions, *, path: str | None, **_: Any) -> None:
    """The pre-flight's check: no validation setting, and the folder layout."""
    check_validation(options)
    check_image_folders(options, path)


def load_image_folders(options: ImageDirOptions, *, path: str | None, seed: int, fold: int | None = None, **_: Any) -> ImageSplits:
    """Index the folder tree at `path` without reading pixels into memory (the source's `stream`)."""
    import numpy as np

    from expkit.data.images import ImageFiles, ImageSplits
    from expkit.data.preprocess import apply_steps

    check_validation(options, fold)
    root, classes, present = check_image_folders(options, path)
    skipped: list[str] = []
    listed = {s: list_split(root / s, classes, options.on_bad_image, skipped) for s in present}
    if skipped:
        print(f"skipped {len(skipped)} unreadable image(s): {', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}", file=sys.stderr)
    if options.max_train_samples:  # a seeded subset, so every class stays represented
        keep = np.sort(np.random.default_rng(seed).permutation(len(listed["train"][0]))[: options.max_train_samples])
        listed["train"] = ([listed["train"][0][i] for i in keep], listed["train"][1][keep])
    if options.max_test_samples:
        keep = np.sort(np.random.default_rng(seed).permutation(len(listed["test"][0]))[: options.max_test_samples])
        listed["test"] = ([listed["test"][0][i] for i in keep], listed["test"][1][keep])

    divisor = None
    for step in options.preprocess.x:
        divisor = (divisor or 1.0) * step.divisor
    train_y, rest_y = apply_steps(options.preprocess.y, listed["train"][1], [listed[s][1] for s in present[1:]], "dataset.preprocess.y")
    encoded = dict(zip(present, [train_y, *rest_y], strict=True))
    files = {s: ImageFiles(listed[s][0], np.asarray(encoded[s])) for s in present}
    return ImageSplits(
        train=files["train"],
        test=files["test"],
        validation=files.get("validation"),
        class_names=classes,
        image_size=(options.image_size[0], options.image_size[1]),
        channels=1 if options.color_mode == "grayscale" else 3,
        divisor=divisor,
        cache=options.cache,
        augment=list(options.augment),
        skipped=skipped,
        fingerprint=folder_fingerprint(root, {s: listed[s][0] for s in present}),
        origin=str(path),
    )


add_source(
    "image_dir",
    Source(
        ImageDirOptions,
        check=check_image_dir,
        stream=load_image_folders,
        origin=lambda options, *, path, **_: str(path),
        named_arrays=False,
    ),
)
