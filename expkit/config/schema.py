"""The experiment schema. Every config key a user can write is declared here."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PositiveInt = Annotated[int, Field(ge=1)]


class Strict(BaseModel):
    """A config node that rejects unknown keys."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


# --- preprocessing steps (one model per `op`) --------------------------------------


class Flatten(Strict):
    op: Literal["flatten"]


class Reshape(Strict):
    op: Literal["reshape"]
    shape: list[int]


class Scale(Strict):
    """x / divisor."""

    op: Literal["scale"]
    divisor: Annotated[float, Field(gt=0)] = 1.0


class Standardize(Strict):
    """(x - mean) / std with the training statistics only."""

    op: Literal["standardize"]


class MultiHot(Strict):
    op: Literal["multi_hot"]
    num_words: PositiveInt


class OneHot(Strict):
    op: Literal["one_hot"]
    num_classes: Annotated[int, Field(ge=2)]


class PadSequences(Strict):
    op: Literal["pad_sequences"]
    maxlen: PositiveInt
    padding: Literal["pre", "post"] = "pre"
    truncating: Literal["pre", "post"] = "pre"


class Cast(Strict):
    op: Literal["cast"]
    dtype: Literal["bool", "uint8", "int32", "int64", "float16", "float32", "float64"]


Step = Annotated[
    Flatten | Reshape | Scale | Standardize | MultiHot | OneHot | PadSequences | Cast,
    Field(discriminator="op"),
]
STEP_OPS = ("flatten", "reshape", "scale", "standardize", "multi_hot", "one_hot", "pad_sequences", "cast")


class Preprocess(Strict):
    x: list[Step] = []
    y: list[Step] = []


class Validation(Strict):
    """Where validation data comes from. Set at most one of the two."""

    holdout: Annotated[int, Field(ge=1)] | Annotated[float, Field(gt=0, lt=1)] | None = None
    split: Annotated[float, Field(gt=0, lt=1)] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Validation:
        if self.holdout is not None and self.split is not None:
            raise ValueError("set either holdout (first N or a fraction of training data) or split (Keras validation_split), not both")
        return self


class Dataset(Strict):
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
    preprocess: Preprocess = Preprocess()
    validation: Validation = Validation()


class Model(BaseModel):
    """A sequential layer list. Extra scalar keys are hyperparameters that layers interpolate."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    layers: Annotated[list[dict[str, Any]], Field(min_length=1)]
    input_shape: list[PositiveInt] | None = None
    loss: str | dict[str, Any]
    metrics: list[str | dict[str, Any]] = []


class Optimizer(BaseModel):
    """A Keras optimizer by class name; other keys are its constructor kwargs."""

    model_config = ConfigDict(extra="allow")

    type: str
    learning_rate: Annotated[float, Field(gt=0)] | dict[str, Any] = 0.001


class Trainer(Strict):
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    verbose: Literal[0, 1, 2] = 1
    shuffle: bool = True
    deterministic: bool = False
    checkpoint_monitor: str | None = None
    threads: PositiveInt | None = None
    # Speed settings (see README "Speed settings"); steps_per_execution and prefetch leave results unchanged.
    steps_per_execution: PositiveInt = 16
    jit_compile: bool = False
    prefetch: bool = True


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


class Paths(Strict):
    root_dir: str
    log_dir: str
    output_dir: str
    data_dir: str | None = None


class ExperimentConfig(Strict):
    name: Annotated[str, Field(min_length=1)]
    seed: int = 42
    paths: Paths
    dataset: Dataset
    model: Model
    optimizer: Optimizer
    callbacks: dict[str, dict[str, Any]] = {}
    trainer: Trainer = Trainer()
    tracking: Tracking
