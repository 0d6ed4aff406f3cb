"""The recorder protocol: everything a job records goes through one `Recorder`.

A job never asks whether it is tracked: it calls its recorder, and the recorder decides what is kept. `NullRecorder`
(tracking=none) keeps nothing; `expkit.tracking.recorder.MlflowRecorder` writes an MLflow run. The job hands over plain
values, paths and models (`RunRecord`); what needs training, serving or data is built here, by the job, never by the recorder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class RecorderUnreachable(Exception):
    """Training is done, the recorder's store is not reachable: everything stays in the run folder for `expkit resume`."""

    #: The job's exit code (BSD's EX_TEMPFAIL).
    exit_code = 75


@dataclass
class ModelToLog:
    """A model for the recorder to log as it is (built by the job through `expkit.serving`)."""

    label: str  # how the run card lists it, e.g. "training model"
    flavor: str  # "keras": a Keras model; "pyfunc": an MLflow PythonModel with its artifacts
    model: Any
    example: Any = None  # keras: the input example; pyfunc: MLflow's input_example
    outputs: Any = None  # keras: the model's outputs on `example` (the signature is inferred from both)
    signature: Any = None  # pyfunc: its signature
    artifacts: dict[str, str] | None = None  # pyfunc: its artifact folders
    tag: str = "model_uri"  # the run tag that names the logged model's URI


@dataclass
class DatasetFacts:
    """The dataset as a run input: name, where it came from, its digest, split sizes and one raw example."""

    name: str
    origin: str
    digest: str
    sizes: dict[str, int]
    raw_example: Any = None


@dataclass
class DecisionBoundary:
    """A 2-D problem's predicted probability field over a grid, with the test points drawn on it."""

    probability: Any
    xx: Any
    yy: Any
    test_points: Any
    test_labels: Any
    title: str


@dataclass
class RunRecord:
    """What a finished training leaves for its recorder: plain values and paths, plus builders of the models and figures
    (called only by a recorder that keeps them, so a job without one builds no inference model)."""

    run_name: str
    overrides: list[str]
    output_dir: Path
    history: dict[str, list[float]]
    test_metrics: dict[str, float]
    confusion: dict[str, Any]
    num_params: int
    dtype_policy: str
    dataset_label: str
    dataset: DatasetFacts | None = None
    params: dict[str, Any] = field(default_factory=dict)
    artifacts: list[tuple[Path, str | None]] = field(default_factory=list)  # (file or folder, artifact path); missing ones skipped
    models: Callable[[], list[ModelToLog]] | None = None
    boundary: Callable[[], DecisionBoundary] | None = None
    hparams: dict[str, Any] | None = None  # the run's knobs for TensorBoard's HParams, when TensorBoard logs are on

    @property
    def last_step(self) -> int:
        """The last epoch's step: test metrics and logged models are linked to it."""
        return max(len(self.history.get("loss", [])) - 1, 0)


class Recorder(Protocol):
    """What a job records through. Use start(), then the log_* methods, then end(status)."""

    #: Whether start(overlap=True) opens the run in the background while the job imports TensorFlow (else the job
    #: starts the run after that import, in its own process).
    background_start: bool

    @property
    def run_id(self) -> str | None:
        """The run's id; None when nothing is recorded."""
        ...

    @property
    def tensorboard_dir(self) -> Path | None:
        """Where the run's TensorBoard logs go (named after the run); None: the trainer's default."""
        ...

    def start(
        self, name: str, tags: dict[str, str], *, run_id: str | None = None, params: dict[str, Any] | None = None, overlap: bool = False
    ) -> None:
        """Open a new run (or reopen `run_id` on resume); `overlap`: it may be created in the background while TensorFlow imports."""
        ...

    def ready(self, label: str = "") -> None:
        """Training is about to start: wait for the run, say where it is (`label`: a sweep job's), note its id in the run folder."""
        ...

    def catch_up(self, history: dict[str, list[float]] | None, last_epoch: int) -> None:
        """On resume: deliver what an earlier attempt could not, and the saved epochs the store lacks."""
        ...

    def callback(self) -> Any:
        """The Keras callback that records every epoch, or None."""
        ...

    def child(self, name: str, tags: dict[str, str]) -> Recorder:
        """A run nested under this one (a fold, a phase)."""
        ...

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None: ...

    def log_params(self, params: dict[str, Any]) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def log_artifacts(self, paths: list[Path], artifact_path: str | None = None) -> None: ...

    def log_curves(self, curves: dict[str, list[float]], *, prefix: str, folder: str) -> None:
        """Per-epoch curves as metrics `prefix + name`, and their plots under plots/`folder`."""
        ...

    def settle(self) -> None:
        """Training is done: wait for the epochs still on their way (raises RecorderUnreachable when they cannot go)."""
        ...

    def log_result(self, record: RunRecord) -> None:
        """Everything a finished training leaves: test metrics, files, plots, models, figures, run card."""
        ...

    def end(self, status: str = "FINISHED") -> None:
        """Close the run as FINISHED, FAILED or KILLED."""
        ...

    def ui_link(self) -> str:
        """Where to look at the run."""
        ...


class NullRecorder:
    """tracking=none: records nothing, opens nothing, writes no store."""

    run_id: str | None = None
    tensorboard_dir: Path | None = None
    background_start = False

    def start(
        self, name: str, tags: dict[str, str], *, run_id: str | None = None, params: dict[str, Any] | None = None, overlap: bool = False
    ) -> None:
        pass

    def ready(self, label: str = "") -> None:
        pass

    def catch_up(self, history: dict[str, list[float]] | None, last_epoch: int) -> None:
        pass

    def callback(self) -> Any:
        return None

    def child(self, name: str, tags: dict[str, str]) -> Recorder:
        return self

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        pass

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_artifacts(self, paths: list[Path], artifact_path: str | None = None) -> None:
        pass

    def log_curves(self, curves: dict[str, list[float]], *, prefix: str, folder: str) -> None:
        pass

    def settle(self) -> None:
        pass

    def log_result(self, record: RunRecord) -> None:
        pass

    def end(self, status: str = "FINISHED") -> None:
        pass

    def ui_link(self) -> str:
        return ""
