"""ActivationLogger (W ch. 5): every layer's activations for one fixed validation sample, saved at each epoch end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from expkit.training.batches import as_model_input

MAX_PNG_UNITS = 1024


class ActivationLogger(keras.callbacks.Callback):
    """Saves `<layer>/epoch_<NNN>` arrays (the layer's output shape, without the batch axis) to an npz after every epoch.

    The sample is validation sample `sample_index` (training sample `sample_index` when the run has no validation
    data; never a test sample). The file is rewritten each epoch, so an interrupted run keeps what it logged.
    With `png`, a heatmap per layer (epochs × units) is written next to it when training ends.
    """

    def __init__(self, sample_index: int = 0, filename: str = "activations/activations.npz", png: bool = False) -> None:
        super().__init__()
        self.sample_index, self.filename, self.png = sample_index, filename, png
        self.path = Path(filename)
        self.sample: np.ndarray | None = None
        self.sample_from = ""
        self.arrays: dict[str, np.ndarray] = {}
        self._probe: Any = None
        self._layers: list[Any] = []

    def use_run(self, splits: Any, output_dir: Path) -> None:
        """Called by the runner before fit: the run's data and folder."""
        self.path = self.path if self.path.is_absolute() else output_dir / self.path
        x, self.sample_from = (splits.x_val, "validation") if splits.x_val is not None else (splits.x_train, "training")
        if not 0 <= self.sample_index < len(x):
            from expkit.errors import ExpkitError

            raise ExpkitError(f"sample_index {self.sample_index} is outside the {len(x)} {self.sample_from} samples", key="callbacks")
        self.sample = as_model_input(x[self.sample_index : self.sample_index + 1])

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.sample is None:
            raise RuntimeError("ActivationLogger needs use_run(splits, output_dir) before training")
        self._layers = [layer for layer in self.model.layers if not isinstance(layer, keras.layers.InputLayer) and _single(layer.output)]
        inputs = self.model.inputs
        self._probe = keras.Model(inputs[0] if len(inputs) == 1 else inputs, [layer.output for layer in self._layers])
        if self.path.is_file():  # a resumed run: keep the epochs logged before the interruption
            with np.load(self.path) as stored:
                self.arrays = {key: stored[key] for key in stored.files}

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        outputs = self._probe(self.sample, training=False)
        outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
        for layer, output in zip(self._layers, outputs, strict=True):
            self.arrays[f"{layer.name}/epoch_{epoch:03d}"] = keras.ops.convert_to_numpy(output)[0]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial.npz")
        np.savez(partial, **self.arrays)
        partial.replace(self.path)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.png and self.arrays:
            write_pngs(self.arrays, self.path.parent, f"{self.sample_from} sample {self.sample_index}")


def _single(output: Any) -> bool:
    return not isinstance(output, list | tuple | dict)


def write_pngs(arrays: dict[str, np.ndarray], out_dir: Path, sample: str) -> list[Path]:
    """One small heatmap per layer: a row per epoch, a column per unit (flattened; the first 1,024)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers: dict[str, list[str]] = {}
    for key in sorted(arrays):
        layers.setdefault(key.split("/")[0], []).append(key)
    written = []
    for layer, keys in layers.items():
        rows = np.stack([arrays[k].reshape(-1)[:MAX_PNG_UNITS] for k in keys])
        fig, ax = plt.subplots(figsize=(6, 1.2 + 0.15 * len(keys)))
        image = ax.imshow(rows, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set(xlabel="unit", ylabel="epoch", title=f"{layer}: activations of the {sample}")
        ax.set_yticks(range(len(keys)), [str(int(k.rsplit("_", 1)[1]) + 1) for k in keys])
        fig.colorbar(image, ax=ax)
        fig.tight_layout()
        path = out_dir / f"{layer}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written
