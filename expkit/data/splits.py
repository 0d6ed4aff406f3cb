"""Split data as the trainer sees it: one interface (`DataSplits`) over arrays in memory (`Splits`) and data streamed
from disk per pass (`expkit.data.images.ImageSplits`, `expkit.data.table_stream.TableStream`).

The runner uses only this interface, never the type: it asks `for_model` for the splits named after the model's
inputs and outputs, `feeds(...)` for what feeds fit/evaluate, `write_files` for the run folder's files for people, and
`record` for the dataset's plain description (name, origin, digest, sizes, raw example, params, artifacts).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

# One array, or arrays keyed by model input / output name (sources such as `random` and `npz`).
Array = np.ndarray | dict[str, np.ndarray]


@dataclass
class DatasetRecord:
    """The dataset of a run as plain values, for the recorder.

    `sizes`: samples per split; empty for streamed data, which is not logged as a dataset input (as before).
    `raw_example`: a few raw test inputs (None: named or typed inputs). `params`: extra run params
    (`dataset.class_names`, `dataset.skipped_images`). `artifacts`: files in the run folder to log (classes.json).
    """

    name: str
    origin: str
    digest: str
    sizes: dict[str, int]
    raw_example: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    artifacts: list[Path] = field(default_factory=list)


class Feeds(Protocol):
    """What feeds fit and evaluate: splits that stream feed themselves; arrays through expkit.training.feeds."""

    epoch_ends: bool  # training data ends with each epoch (a multi-step call may stop there); False: an endless stream

    def steps(self, name: str, batch_size: int) -> int: ...

    def feed(self, name: str, batch_size: int, *, prefetch: bool = True, threads: int | None = None, share: bool = True) -> Any:
        """Batches of split `name` ("train", "validation", "test"), one pass in order, for evaluate/predict."""

    def training_feed(
        self,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        epoch: int,
        epochs: int,
        prefetch: bool = True,
        threads: int | None = None,
        share: bool = True,
    ) -> tuple[Any, int | None, list[Any]]:
        """fit()'s data for epochs `epoch`..`epochs`-1: (data, steps_per_epoch or None, callbacks to pass with it)."""

    def input_example(self, count: int) -> np.ndarray:
        """The first `count` test inputs as the model sees them (the logged model's input example)."""


class DataSplits(Protocol):
    """What the runner uses of any split data."""

    fingerprint: str  # a digest of the data, told apart across runs
    name: str  # the dataset's name and where it was read from (set by load_splits)
    origin: str
    y_train: Any  # the encoded labels (label checks, the random baseline)
    y_test: Any
    y_val: Any
    x_val: Any  # None without validation data (see has_validation)
    feature_types: Any  # typed raw columns ({input: feature spec}) that the model's own layers encode; None: model-ready

    @property
    def has_validation(self) -> bool: ...

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    def for_model(self, model: Any) -> DataSplits: ...

    def feeds(self, arrays: Callable[[Splits], Feeds]) -> Feeds: ...

    def write_files(self, output_dir: Path, *, seed: int, preview: bool = False) -> None: ...

    def record(self, output_dir: Path) -> DatasetRecord: ...


@dataclass
class Splits:
    """Model-ready arrays (single, or keyed by input/output name); x_val is None when the run has no validation data."""

    x_train: Array
    y_train: Array
    x_test: Array
    y_test: Array
    x_val: Array | None = None
    y_val: Array | None = None
    fingerprint: str = ""
    # For the inference model: a few raw test samples (the dataset's own form) and each x step's fitted statistics.
    raw_x_example: np.ndarray | None = None
    x_fitted: list[dict[str, Any]] = field(default_factory=list)
    # Samples per split before preprocessing: {"train": n, "validation": n, "test": n}.
    sizes: dict[str, int] = field(default_factory=dict)
    # What the source fitted on the training split for the raw-input inference model (text_dir: a TextFitted).
    source_fitted: Any = None
    # Typed raw features ({input: feature spec}, expkit.config.features): x holds raw columns, and the model fits its
    # preprocessing layers on x_train (expkit.models.preprocessing). None: x is model-ready.
    feature_types: dict[str, Any] | None = None
    # {target: class names} for targets given as strings (encoded as indices into these names).
    class_names: dict[str, list[str]] = field(default_factory=dict)
    # The typed columns' training statistics (expkit.data.table_stats), set when the model's layers are fitted.
    statistics: dict[str, Any] | None = None
    # The dataset's name and where it was read from (set by load_splits), for the dataset record.
    name: str = ""
    origin: str = ""

    # --- the common interface (DataSplits) ------------------------------------------------------------

    @property
    def has_validation(self) -> bool:
        return self.x_val is not None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The per-sample shape of the one input array (sequential models)."""
        return tuple(self.x_train.shape[1:])  # type: ignore[union-attr]

    def for_model(self, model: Any) -> Splits:
        """The splits as `model` (the config's model node) reads them: every array keyed by its input/output names for a
        graph model, the one array of a named source for a sequential one."""
        from expkit.data.naming import name_splits

        return name_splits(model, self)

    def feeds(self, arrays: Callable[[Splits], Feeds]) -> Feeds:
        """What feeds the model: arrays are batched by the trainer's array feeder `arrays` (expkit.training.feeds)."""
        return arrays(self)

    def write_files(self, output_dir: Path, *, seed: int, preview: bool = False) -> None:
        """The run folder's record of what the source fitted, for people (text_dir: classes.json and vocabulary.txt)."""
        writer = getattr(self.source_fitted, "write", None)
        if writer is not None:
            writer(output_dir)

    def record(self, output_dir: Path) -> DatasetRecord:
        """The dataset as plain values for the run record (see DatasetRecord)."""
        classes = getattr(self.source_fitted, "class_names", None)
        params = {"dataset.class_names": ",".join(classes), "dataset.skipped_images": 0} if classes is not None else {}
        artifacts = [output_dir / "classes.json"] if classes is not None else []
        return DatasetRecord(self.name, self.origin, self.fingerprint, dict(self.sizes), self.raw_x_example, params, artifacts)


def arrays_of(a: Array) -> list[np.ndarray]:
    """The arrays in `a`, in name order."""
    return [a[k] for k in sorted(a)] if isinstance(a, dict) else [a]


def num_samples(a: Array) -> int:
    return len(arrays_of(a)[0])


def take(a: Array, rows: Any) -> Array:
    """`a[rows]` for one array or for every array of a named set."""
    return {k: v[rows] for k, v in a.items()} if isinstance(a, dict) else a[rows]


def fingerprint(*arrays: Array) -> str:
    """A short sha256 over the raw arrays, so runs on different data are told apart."""
    digest = hashlib.sha256()
    for a in (item for named in arrays for item in arrays_of(named)):
        if a.dtype == object:
            for item in a:
                item = np.asarray(item)
                digest.update(len(item).to_bytes(8, "little") if item.ndim else b"s")
                digest.update(item.tobytes())
        else:
            digest.update(np.ascontiguousarray(a).tobytes())
        digest.update(str(a.shape).encode())
    return digest.hexdigest()[:16]
