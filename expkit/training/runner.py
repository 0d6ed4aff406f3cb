"""The fit/evaluate loop: seeds, model, callbacks, checkpoints, test metrics."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from expkit.config.schema import ExperimentConfig
from expkit.data.images import ImageSplits, save_augmented_grid
from expkit.data.pipeline import Splits
from expkit.errors import ExpkitError
from expkit.models.builder import build_model
from expkit.training.batches import ArrayBatches
from expkit.training.callbacks import make_callbacks
from expkit.training.compile import compile_model
from expkit.training.phases import plan_phases, remember_trainable, set_trainable
from expkit.training.resume import CompleteEpochsOnly, EpochState, Interrupted, StopOnRequest, StopRequest, TrainingState


@dataclass
class Outcome:
    """What a finished training run produced."""

    model: Any
    history: dict[str, list[float]]
    test_metrics: dict[str, float]
    checkpoints: dict[str, Path] = field(default_factory=dict)
    # The data the model was trained on (cached base features in feature-extraction mode).
    splits: Any = None


def configure_runtime(seed: int, *, deterministic: bool = False, threads: int | None = None) -> None:
    """Seed Python, numpy and the backend; optionally make TF ops deterministic and cap threads."""
    import keras
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TF already initialised in this process (reused sweep worker)
            pass
    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def check_labels(model: Any, loss: Any, splits: Splits | ImageSplits) -> None:
    """The labels must fit the model's output: one-hot width or sparse class range."""
    units = model.output_shape[-1]
    y = splits.y_train
    loss_name = loss if isinstance(loss, str) else str(loss.get("type", ""))
    if "sparse" in loss_name.lower():
        if y.ndim > 1 and y.shape[-1] != 1:
            raise ExpkitError(
                f"{loss_name} needs integer labels, but labels have shape {y.shape}",
                key="model.loss",
                hint="use categorical_crossentropy for one-hot labels",
            )
        top = int(np.max(y)) if len(y) else 0
        if top >= units:
            raise ExpkitError(
                f"labels go up to {top} but the last layer has {units} units",
                key="model.layers",
                hint=f"give the last layer {top + 1} units",
            )
    elif y.ndim == 2 and units != y.shape[-1]:
        raise ExpkitError(
            f"the model outputs {units} values per sample but labels have {y.shape[-1]}",
            key="model.layers",
            hint="make the last layer's units match the label encoding (dataset.preprocess.y)",
        )


def first_nan_epoch(history: dict[str, list[float]]) -> int | None:
    for i, value in enumerate(history.get("loss", [])):
        if not math.isfinite(value):
            return i
    return None


def feed(
    splits: Splits | ImageSplits, name: str, batch_size: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0, epochs: int = 1
) -> Any:
    """Batches of split `name` ("train", "validation", "test") for fit/evaluate/predict.

    Training batches are drawn in the order seeded by (seed, epoch), arrays and image folders alike;
    a streamed training set covers epochs `epoch`..`epochs`-1 (pass steps_per_epoch to fit()).
    """
    if isinstance(splits, ImageSplits):
        return splits.batches(name, batch_size, train=name == "train", shuffle=shuffle, seed=seed, first_epoch=epoch, epochs=epochs)
    x, y = {"train": (splits.x_train, splits.y_train), "validation": (splits.x_val, splits.y_val), "test": (splits.x_test, splits.y_test)}[
        name
    ]
    return ArrayBatches(x, y, batch_size, shuffle=shuffle, seed=seed, epoch=epoch)


def input_example(splits: Splits | ImageSplits, count: int) -> np.ndarray:
    """The first `count` test inputs as the model sees them (an input example for the logged model)."""
    return splits.sample("test", count) if isinstance(splits, ImageSplits) else splits.x_test[:count]


def prepare_inputs(config: ExperimentConfig, splits: Splits | ImageSplits, output_dir: Path) -> Splits | ImageSplits:
    """Record the image classes (classes.json), draw the augmentation preview, and swap images for cached base features."""
    if isinstance(splits, ImageSplits):
        info = {"class_names": splits.class_names, "skipped_images": splits.skipped}
        (output_dir / "classes.json").write_text(json.dumps(info, indent=1) + "\n")
        if config.dataset.augment_preview:
            save_augmented_grid(splits, output_dir / "plots" / "augmented_samples.png", config.seed)
    if config.features is not None:
        from expkit.data.features import extract_features

        root = Path(config.features.cache_dir or Path(config.paths.root_dir) / ".expkit" / "features").expanduser()
        splits = extract_features(splits, config.features.base, config.features.weights, root)  # type: ignore[arg-type]
    return splits


def train_and_evaluate(
    config: ExperimentConfig,
    splits: Splits | ImageSplits,
    output_dir: Path,
    epoch_callbacks: list[Any] | None = None,
    *,
    stop: StopRequest | None = None,
    resume_from: TrainingState | None = None,
) -> Outcome:
    """Build, fit (phase by phase), checkpoint and test the model described by `config` on `splits`.

    `epoch_callbacks` see only complete epochs, after the resumable state for that epoch is saved.
    With `resume_from`, weights, optimizer state and epoch count continue from that state, in its phase.
    """
    import keras

    trainer = config.trainer
    stop = stop or StopRequest()
    configure_runtime(config.seed, deterministic=trainer.deterministic, threads=trainer.threads)
    output_dir.mkdir(parents=True, exist_ok=True)
    splits = prepare_inputs(config, splits, output_dir)
    data_shape = splits.input_shape if isinstance(splits, ImageSplits) else splits.x_train.shape[1:]
    model = build_model(config.model.layers, config.model.input_shape or data_shape, name=config.name)
    built_trainable = remember_trainable(model)
    phases = plan_phases(config)
    compile_model(model, phases[0].optimizer, config.model.loss, config.model.metrics)
    check_labels(model, config.model.loss, splits)

    ckpt_dir = output_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    has_validation = splits.x_val is not None
    monitor = trainer.checkpoint_monitor or ("val_loss" if has_validation else "loss")
    checkpoints = {"best": ckpt_dir / "best.keras", "final": ckpt_dir / "final.keras"}
    initial_epoch, history, best = 0, {}, None
    if resume_from is not None:
        saved_in = next((p for p in phases if p.start <= resume_from.epoch < p.end), phases[-1])
        set_trainable(model, saved_in.trainable_from, built_trainable, f"phases.{saved_in.index}.trainable_from")
        compile_model(model, saved_in.optimizer, config.model.loss, config.model.metrics)
        model.optimizer.build(model.trainable_variables)
        model.load_weights(resume_from.weights)
        initial_epoch, history, best = resume_from.epoch + 1, resume_from.history, resume_from.best

    epoch_state = EpochState(ckpt_dir / "resume", history, monitor, best)
    best_checkpoint = keras.callbacks.ModelCheckpoint(
        str(checkpoints["best"]), monitor=monitor, save_best_only=True, initial_value_threshold=best
    )
    recorders = [best_checkpoint, epoch_state, *(epoch_callbacks or [])]
    callbacks = [*make_callbacks(config.callbacks, output_dir), StopOnRequest(stop), CompleteEpochsOnly(stop, recorders)]
    tb = config.tracking.tensorboard
    if tb.enabled:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(output_dir / "tensorboard"), histogram_freq=tb.histogram_freq))

    batch = trainer.batch_size
    validation = feed(splits, "validation", batch) if has_validation else None
    resumed_phase = next((p.index for p in phases if p.start <= initial_epoch - 1 < p.end), None) if resume_from else None
    for phase in phases:
        if phase.end <= initial_epoch or stop.signum is not None:
            continue
        if phase.index != resumed_phase:  # a new phase: its trainable layers and a fresh optimizer (the resumed one keeps its state)
            set_trainable(model, phase.trainable_from, built_trainable, f"phases.{phase.index}.trainable_from")
            compile_model(model, phase.optimizer, config.model.loss, config.model.metrics)
        first = max(initial_epoch, phase.start)
        steps = splits.steps("train", batch) if isinstance(splits, ImageSplits) else None
        model.fit(
            feed(splits, "train", batch, shuffle=trainer.shuffle, seed=config.seed, epoch=first, epochs=phase.end),
            epochs=phase.end,
            initial_epoch=first,
            steps_per_epoch=steps,
            verbose=trainer.verbose,
            validation_data=validation,
            shuffle=False,  # batches are shuffled reproducibly per epoch by feed()
            callbacks=callbacks,
        )
        resumed_phase = None
    history = epoch_state.history
    nan_epoch = first_nan_epoch(history)
    if nan_epoch is not None:
        raise ExpkitError(
            f"training loss became NaN or inf at epoch {nan_epoch}",
            key="optimizer.learning_rate",
            hint="lower the learning rate, and check that inputs are scaled (dataset.preprocess.x)",
        )
    if stop.signum is not None:
        raise Interrupted(stop.signum)
    model.save(checkpoints["final"])
    test = model.evaluate(feed(splits, "test", batch), verbose=0, return_dict=True)
    test_metrics = {f"test_{k}": float(v) for k, v in test.items()}
    summary = {
        "test": test_metrics,
        "epochs_run": len(history.get("loss", [])),
        "final": {k: v[-1] for k, v in history.items()},
        "monitor": monitor,
    }
    (output_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    return Outcome(model, history, test_metrics, checkpoints, splits)
