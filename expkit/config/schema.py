"""The experiment schema. Every config key a user can write is declared here."""

from __future__ import annotations

import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationInfo, field_validator, model_validator

PositiveInt = Annotated[int, Field(ge=1)]


class Strict(BaseModel):
    """A config node that rejects unknown keys."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


# --- preprocessing steps: one registered class per `op`, holding its options (its fit: expkit/data/preprocess.py) ---

STEP_CLASSES: dict[str, type[PreprocessStep]] = {}


class PreprocessStep(Strict):
    """A preprocessing op's options. Subclass it with `op: Literal["name"]` and its options, decorate it with @register_step,
    and register its fit (the transform, with statistics from the training array) with `@fits` in expkit/data/preprocess.py."""


def register_step(cls: type[PreprocessStep]) -> type[PreprocessStep]:
    """Make `cls` available as `{op: <its op name>, ...}` in dataset.preprocess lists."""
    (name,) = typing.get_args(cls.model_fields["op"].annotation)
    STEP_CLASSES[name] = cls
    return cls


@register_step
class Flatten(PreprocessStep):
    op: Literal["flatten"]


@register_step
class Reshape(PreprocessStep):
    op: Literal["reshape"]
    shape: list[int]


@register_step
class Scale(PreprocessStep):
    """x / divisor."""

    op: Literal["scale"]
    divisor: Annotated[float, Field(gt=0)] = 1.0


@register_step
class Standardize(PreprocessStep):
    """(x - mean) / std with the training statistics only."""

    op: Literal["standardize"]


@register_step
class MultiHot(PreprocessStep):
    op: Literal["multi_hot"]
    num_words: PositiveInt


@register_step
class OneHot(PreprocessStep):
    op: Literal["one_hot"]
    num_classes: Annotated[int, Field(ge=2)]


@register_step
class PadSequences(PreprocessStep):
    op: Literal["pad_sequences"]
    maxlen: PositiveInt
    padding: Literal["pre", "post"] = "pre"
    truncating: Literal["pre", "post"] = "pre"


@register_step
class Cast(PreprocessStep):
    op: Literal["cast"]
    dtype: Literal["bool", "uint8", "int32", "int64", "float16", "float32", "float64"]


if typing.TYPE_CHECKING:  # the union is built from the registry at run time; type checkers see the base class
    Step = PreprocessStep
else:
    Step = Annotated[Union[tuple(STEP_CLASSES.values())], Field(discriminator="op")]  # noqa: UP007
STEP_OPS = tuple(STEP_CLASSES)


class Preprocess(BaseModel):
    """Steps for the features (x) and labels (y); a key named after an input or output gives that array its own steps."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, list[Step]]

    x: list[Step] = []
    y: list[Step] = []

    def steps_for(self, kind: str, name: str | None) -> list[Any]:
        """The steps of the array `name` of `kind` ('x' or 'y'): its own list if given, else the shared one."""
        own = (self.model_extra or {}).get(name) if name else None
        return own if own is not None else getattr(self, kind)


class Validation(Strict):
    """Where validation data comes from. Set at most one of the two."""

    holdout: Annotated[int, Field(ge=1)] | Annotated[float, Field(gt=0, lt=1)] | None = None
    split: Annotated[float, Field(gt=0, lt=1)] | None = None
    # K-fold cross-validation: K contiguous folds of the training data, each the validation data once.
    folds: Annotated[int, Field(ge=2)] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Validation:
        if sum(v is not None for v in (self.holdout, self.split, self.folds)) > 1:
            raise ValueError(
                "set one of holdout (first N or a fraction of training data), split (Keras validation_split) or folds (k-fold), not both"
            )
        return self


PlaygroundFeature = Literal["x1", "x2", "x1_squared", "x2_squared", "x1_x2", "sin_x1", "sin_x2"]


class Playground(Strict):
    """The `playground` source's options, as the TensorFlow Playground's controls."""

    num_samples: Annotated[int, Field(ge=4)] = 500
    # The Playground's noise slider, 0-50 %, as 0-0.5.
    noise: Annotated[float, Field(ge=0, le=0.5)] = 0.0
    # The Playground's "ratio of training to test data".
    train_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.5
    features: Annotated[list[PlaygroundFeature], Field(min_length=1)] = ["x1", "x2"]
    # The data's own seed; null: the run's seed.
    seed: int | None = None


class Dataset(Strict):
    """Options every source shares; a source with options of its own (npz, random) declares them in its registered schema."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    source: str
    name: str
    # An explicit data file; default: <paths.data_dir>/<name>.npz, then the Keras cache.
    path: str | None = None
    # Keras text datasets: keep the `num_words` most frequent words.
    num_words: PositiveInt | None = None
    # Sources without a fixed test split (scikit-learn) hold out this fraction as test data.
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    # Keep only the first N training / test samples (quick smoke runs and tests).
    max_train_samples: PositiveInt | None = None
    max_test_samples: PositiveInt | None = None
    # image_dir source: resize every image to [height, width]; rgb (3 channels) or grayscale (1).
    image_size: Annotated[list[PositiveInt], Field(min_length=2, max_length=2)] | None = None
    color_mode: Literal["rgb", "grayscale"] = "rgb"
    # image_dir: cache decoded images in "memory" or in files under a folder (null: decode every epoch).
    cache: str | None = None
    # image_dir: an unreadable image is an error, or is skipped and counted.
    on_bad_image: Literal["error", "skip"] = "error"
    # image_dir: Keras preprocessing layers ({type: RandomFlip, ...}) applied to training batches only, on the CPU.
    augment: list[dict[str, Any]] = []
    # image_dir: write a PNG grid of augmented training images (logged as an artifact).
    augment_preview: bool = False
    preprocess: Preprocess = Preprocess()  # type: ignore[call-arg]  # mypy reads __pydantic_extra__ as a field
    validation: Validation = Validation()
    # playground source: generated 2-D problems (see expkit/data/playground.py).
    playground: Playground | None = None


class GraphInput(Strict):
    """A named model input; shape (without the batch axis) and dtype default from the data."""

    shape: list[PositiveInt] | None = None
    dtype: str | None = None


class Block(Strict):
    """A reusable sub-graph: its nodes read `input` (the tensor it is applied to) and `$param` placeholders."""

    params: dict[str, Any] = {}
    nodes: Annotated[list[dict[str, Any]], Field(min_length=1)]
    output: str | None = None


class Model(BaseModel):
    """Either a sequential `layers` list (one input, one output) or a graph: `inputs`, `nodes`, `shared`, `blocks`, `outputs`.

    Extra scalar keys are hyperparameters that layers interpolate.
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    layers: list[dict[str, Any]] = []
    input_shape: list[PositiveInt] | None = None
    loss: str | dict[str, Any] | None = None
    metrics: list[str | dict[str, Any]] = []
    inputs: dict[str, GraphInput] | None = None
    shared: dict[str, dict[str, Any]] = {}
    blocks: dict[str, Block] = {}
    nodes: list[dict[str, Any]] = []
    outputs: dict[str, dict[str, Any]] | None = None

    @property
    def is_graph(self) -> bool:
        return self.outputs is not None

    def head_losses(self) -> dict[str, Any]:
        """{output name: loss}; a sequential model has one unnamed head ("")."""
        if self.outputs is not None:
            return {name: spec["loss"] for name, spec in self.outputs.items()}
        return {"": self.loss}


class Optimizer(BaseModel):
    """A Keras optimizer by class name; other keys are its constructor kwargs."""

    model_config = ConfigDict(extra="allow")

    type: str
    learning_rate: Annotated[float, Field(gt=0)] | dict[str, Any] = 0.001


class Features(Strict):
    """Feature extraction: a frozen keras.applications base runs once per split; the model trains on its cached outputs."""

    base: str
    weights: str | None = "imagenet"
    # null: <paths.root_dir>/.expkit/features
    cache_dir: str | None = None


class Phase(Strict):
    """One training phase: its epochs, optimizer, and what is trainable."""

    epochs: PositiveInt
    optimizer: Optimizer | None = None
    # null: trainable as the model config says; a layer name: that layer (at any depth) and every later one.
    trainable_from: str | None = None


class Trainer(Strict):
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    verbose: Literal[0, 1, 2, "auto"] = "auto"
    shuffle: bool = True
    deterministic: bool = False
    checkpoint_monitor: str | None = None
    threads: PositiveInt | None = None
    # tf.distribute: one device, or every local device (mirrored). multi_worker_mirrored is refused (Keras 3.15 cannot train with it).
    strategy: Literal["default", "mirrored", "multi_worker_mirrored"] = "default"
    # Split the CPU into this many logical devices (try `mirrored` on a machine without GPUs).
    cpu_devices: Annotated[int, Field(ge=2)] | None = None
    # Resources each sweep job asks a cluster launcher (Ray, SLURM) for.
    cpus: PositiveInt = 1
    gpus: Annotated[float, Field(ge=0)] = 0
    # Speed settings (see README "Speed settings"); steps_per_execution and prefetch leave results unchanged.
    steps_per_execution: PositiveInt = 16
    jit_compile: bool = False
    prefetch: bool = True
    # Mixed precision (README "Mixed precision"): layers compute in float16/bfloat16, variables, outputs and losses stay float32.
    # `mixed_precision: true` is mixed_float16 (GPUs); `precision` names the Keras policy (mixed_bfloat16 suits CPUs).
    mixed_precision: StrictBool = False
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] | None = None

    @field_validator("precision")
    @classmethod
    def _one_precision(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value == "float32" and info.data.get("mixed_precision"):
            raise ValueError("mixed_precision is true, which asks for mixed_float16: drop one of the two keys")
        return value

    @property
    def dtype_policy(self) -> str:
        """The Keras dtype policy the model is built under."""
        return self.precision or ("mixed_float16" if self.mixed_precision else "float32")


class TensorBoard(Strict):
    enabled: bool = True
    histogram_freq: Annotated[int, Field(ge=0)] = 0


class Tracking(Strict):
    enabled: bool = True
    uri: str | None = None
    experiment_name: str
    artifact_dir: str
    log_model: bool = True
    # EMA factor for the smoothed learning curves (0: raw curves only; the books use 0.9).
    plot_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0
    tensorboard: TensorBoard = TensorBoard()
    # Let a cluster launcher (Ray with an address, SLURM) write to a local SQLite/file store (only on a shared file system).
    allow_local_store_on_cluster: bool = False
    # Training done and the tracking server unreachable: wait this long for it, then keep the results on disk (exit 75).
    server_wait_s: Annotated[float, Field(ge=0)] = 300.0


class Paths(Strict):
    root_dir: str
    log_dir: str
    output_dir: str
    data_dir: str | None = None


class ObjectiveNode(Strict):
    """What selection optimises: a validation metric, min/max (auto: max for accuracy-like), read at the best or last epoch."""

    metric: Annotated[str, Field(min_length=1)] = "val_loss"
    mode: Literal["min", "max", "auto"] = "auto"
    at: Literal["best", "last"] = "best"

    @model_validator(mode="after")
    def _not_test(self) -> ObjectiveNode:
        if self.metric.startswith("test_"):
            raise ValueError(f"'{self.metric}' is a test metric: test data never chooses a model; use a val_* metric")
        return self


class Sweep(Strict):
    """How a multirun treats failing jobs: by default a failure is recorded and the sweep goes on."""

    fail_fast: bool = False
    # Exit non-zero at the end when more than this fraction of the jobs failed (null: never).
    max_failure_rate: Annotated[float, Field(ge=0, le=1)] | None = None


class ExperimentConfig(Strict):
    name: Annotated[str, Field(min_length=1)]
    seed: int = 42
    paths: Paths
    dataset: Dataset
    model: Model
    optimizer: Optimizer
    callbacks: dict[str, dict[str, Any]] = {}
    trainer: Trainer = Trainer()
    # Multi-phase training (fine-tuning): replaces trainer.epochs and optimizer; one run, one epoch axis.
    phases: list[Phase] = []
    features: Features | None = None
    tracking: Tracking
    objective: ObjectiveNode = ObjectiveNode()
    # How a configuration is scored: holdout (one run), kfold (dataset.validation.folds), retrain (best epoch, then train+val).
    protocol: Literal["holdout", "kfold", "retrain"] = "holdout"
    sweep: Sweep = Sweep()

    @model_validator(mode="after")
    def _protocol_data(self) -> ExperimentConfig:
        folds = self.dataset.validation.folds
        if self.protocol == "kfold" and folds is None:
            raise ValueError("protocol kfold needs dataset.validation.folds (e.g. 4)")
        if folds is not None and self.protocol == "holdout":
            self.protocol = "kfold"
        if self.protocol == "retrain" and folds is not None:
            raise ValueError("protocol retrain finds the best epoch on a holdout: set dataset.validation.holdout, not folds")
        return self
