"""The fit/evaluate loop: seeds, model, callbacks, checkpoints, test metrics."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from expkit.config.schema import ExperimentConfig
from expkit.data.pipeline import Splits
from expkit.errors import ExpkitError
from expkit.models.builder import build_model
from expkit.training import feeding
from expkit.training.callbacks import make_callbacks
from expkit.training.compile import compile_model
from expkit.training.resume import CompleteEpochsOnly, EpochState, Interrupted, StopOnRequest, StopRequest, TrainingState


@dataclass
class Outcome:
    """What a finished training run produced."""

    model: Any
    history: dict[str, list[float]]
    test_metrics: dict[str, float]
    checkpoints: dict[str, Path] = field(default_factory=dict)


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


def check_labels(model: Any, loss: Any, splits: Splits) -> None:
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


def train_and_evaluate(
    config: ExperimentConfig,
    splits: Splits,
    output_dir: Path,
    epoch_callbacks: list[Any] | None = None,
    *,
    stop: StopRequest | None = None,
    resume_from: TrainingState | None = None,
) -> Outcome:
    """Build, fit, checkpoint and test the model described by `config` on `splits`.

    `epoch_callbacks` see only complete epochs, after the resumable state for that epoch is saved.
    With `resume_from`, weights, optimizer state and epoch count continue from that state.
    """
    import keras

    trainer = config.trainer
    stop = stop or StopRequest()
    configure_runtime(config.seed, deterministic=trainer.deterministic, threads=trainer.threads)
    input_shape = config.model.input_shape or splits.x_train.shape[1:]
    model = build_model(config.model.layers, input_shape, name=config.name)
    batch = trainer.batch_size
    steps = feeding.steps(splits.x_train, batch)
    user_callbacks = make_callbacks(config.callbacks, output_dir)
    compile_model(
        model,
        config.optimizer.model_dump(),
        config.model.loss,
        config.model.metrics,
        steps_per_execution=feeding.steps_per_execution(trainer.steps_per_execution, steps, user_callbacks),
        jit_compile=trainer.jit_compile,
    )
    check_labels(model, config.model.loss, splits)

    ckpt_dir = output_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    monitor = trainer.checkpoint_monitor or ("val_loss" if splits.x_val is not None else "loss")
    checkpoints = {"best": ckpt_dir / "best.keras", "final": ckpt_dir / "final.keras"}
    initial_epoch, history, best = 0, {}, None
    if resume_from is not None:
        model.optimizer.build(model.trainable_variables)
        model.load_weights(resume_from.weights)
        initial_epoch, history, best = resume_from.epoch + 1, resume_from.history, resume_from.best

    epoch_state = EpochState(ckpt_dir / "resume", history, monitor, best)
    best_checkpoint = keras.callbacks.ModelCheckpoint(
        str(checkpoints["best"]), monitor=monitor, save_best_only=True, initial_value_threshold=best
    )
    recorders = [best_checkpoint, epoch_state, *(epoch_callbacks or [])]
    callbacks = [*user_callbacks, StopOnRequest(stop), CompleteEpochsOnly(stop, recorders)]
    tb = config.tracking.tensorboard
    if tb.enabled:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(output_dir / "tensorboard"), histogram_freq=tb.histogram_freq))

    # Keras advances a per-epoch data source once before the first epoch: epoch e of a run uses order e + 1.
    feed = {"prefetch": trainer.prefetch, "threads": trainer.threads}
    train_batches = feeding.batches(
        splits.x_train, splits.y_train, batch, shuffle=trainer.shuffle, seed=config.seed, first_epoch=initial_epoch + 1, **feed
    )
    validation = feeding.batches(splits.x_val, splits.y_val, batch, **feed) if splits.x_val is not None else None
    if initial_epoch < trainer.epochs:
        model.fit(
            train_batches,
            epochs=trainer.epochs,
            steps_per_epoch=steps if trainer.shuffle else None,
            initial_epoch=initial_epoch,
            verbose=trainer.verbose,
            validation_data=validation,
            shuffle=False,  # the batches come in their per-epoch order already
            callbacks=callbacks,
        )
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
    del train_batches, validation  # frees the pipelines' copies of the arrays before the test pipeline makes its own
    test = model.evaluate(feeding.batches(splits.x_test, splits.y_test, batch, **feed), verbose=0, return_dict=True)
    test_metrics = {f"test_{k}": float(v) for k, v in test.items()}
    summary = {
        "test": test_metrics,
        "epochs_run": len(history.get("loss", [])),
        "final": {k: v[-1] for k, v in history.items()},
        "monitor": monitor,
    }
    (output_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    return Outcome(model, history, test_metrics, checkpoints)
