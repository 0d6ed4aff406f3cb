"""The augmentation preview: a PNG grid of the first training image as training batches augment it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from expkit.data.images import ImageSplits


def save_augmented_grid(splits: ImageSplits, path: Path, seed: int, rows: int = 3, cols: int = 4) -> Path:
    """A PNG grid: the first training image, then augmented versions of it as training batches draw them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tensorflow as tf

    first = replace(splits, train=replace(splits.train, paths=splits.train.paths[:1], labels=splits.train.labels[:1]), cache=None)
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
