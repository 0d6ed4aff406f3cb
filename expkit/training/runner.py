"""The fit/evaluate loop: seeds, model, callbacks, checkpoints, test metrics."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from expkit.config.schema import ExperimentConfig
from expkit.data.naming import name_splits  # noqa: F401  (re-exported: callers name splits for a model from here)
from expkit.data.splits import DataSplits, Feeds
from expkit.errors import ExpkitError
from expkit.models.builder import build_model
from expkit.selection.objective import Objective, direction
from expkit.training import feeding
from expkit.training.baseline import loss_name, random_baseline
from expkit.training.batches import COMPACT
from expkit.training.callbacks import attach_data, make_callbacks
from expkit.training.compile import compile_model
from expkit.training.confusion import classifier_heads, confusion_tally
from expkit.training.feeds import ArrayFeeds
from expkit.training.phases import plan_phases, remember_trainable, set_trainable
from expkit.training.precision import check_float32_outputs, dtype_policy
from expkit.training.progress import progress_bars
from expkit.training.resume import CompleteEpochsOnly, EpochState, Interrupted, StopOnRequest, StopRequest, TrainingState
from expkit.training.strategy import is_distributed, make_strategy, split_cpu


@dataclass
class Outcome:
    """What a finished training run produced."""

    model: Any
    history: dict[str, list[float]]
    test_metrics: dict[str, float]
    checkpoints: dict[str, Path] = field(default_factory=dict)
    # The data as the model saw it: named by input/output for graph models, cached base features in feature extraction.
    splits: Any = None
    # {classification head: test confusion matrix}, counted during the test evaluation ("" names a sequential model's head).
    confusion: dict[str, np.ndarray] = field(default_factory=dict)


_runtime_configured = False


def configure_runtime(seed: int, *, deterministic: bool = False, threads: int | None = None, cpu_devices: int | None = None) -> None:
    """Seed Python, numpy and the backend; optionally make TF ops deterministic, cap threads and split the CPU."""
    import keras
    import tensorflow as tf

    if cpu_devices:
        split_cpu(cpu_devices)
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TF already initialised in this process (reused sweep worker)
            pass
    global _runtime_configured
    keras.utils.clear_session(free_memory=_runtime_configured)  # the first time in a process there is nothing to collect
    _runtime_configured = True
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def check_labels(model: Any, loss: Any, splits: DataSplits) -> None:
    """The labels must fit the model's output: one-hot width or sparse class range."""
    check_output_labels(model.output_shape[-1], loss, splits.y_train, loss_key="model.loss", layer_key="model.layers")


def check_output_labels(units: int, loss: Any, y: np.ndarray, *, loss_key: str, layer_key: str) -> None:
    """One output's labels must fit its units: one-hot width or sparse class range."""
    name = loss_name(loss)
    if "sparse" in name.lower():
        if y.ndim > 1 and y.shape[-1] != 1:
            raise ExpkitError(
                f"{name} needs integer labels, but labels have shape {y.shape}",
                key=loss_key,
                hint="use categorical_crossentropy for one-hot labels",
            )
        top = int(np.max(y)) if len(y) else 0
        if top >= units:
            raise ExpkitError(
                f"labels go up to {top} but the last layer has {units} units",
                key=layer_key,
                hint=f"give the last layer {top + 1} units",
            )
    elif "categorical" in name.lower() and units > 1 and y.ndim == 1:  # one label per sample: Keras would fail on the shapes
        raise ExpkitError(
            f"{name} expects one value per class (one-hot or soft targets), but labels have shape {y.shape}",
            key=loss_key,
            hint="use sparse_categorical_crossentropy for integer labels, or one-hot encode them",
        )
    elif y.ndim == 2 and units != y.shape[-1]:
        raise ExpkitError(
            f"the model outputs {units} values per sample but labels have {y.shape[-1]}",
            key=layer_key,
            hint="make the last layer's units match the label encoding (dataset.preprocess.y)",
        )


def input_specs(model: Any, x_train: dict[str, np.ndarray]) -> dict[str, tuple[tuple[int, ...], str]]:
    """Each graph input's (shape, dtype): from the config, else from the training data (compact uint8 arrives as float32)."""
    specs = {}
    for name, spec in (model.inputs or {}).items():
        array = x_train[name]
        default = "int32" if np.issubdtype(array.dtype, np.integer) and array.dtype not in COMPACT else "float32"
        specs[name] = (tuple(spec.shape or array.shape[1:]), spec.dtype or default)
    return specs


def build_configured_model(config: ExperimentConfig, splits: Any) -> Any:
    """The model `config.model` describes, with input shapes defaulting from `splits` (named for graph models)."""
    if splits.feature_types is not None:
        from expkit.models.preprocessing import build_table_model

        return build_table_model(config, splits)
    if config.model.is_graph:
        from expkit.models.graph import build_graph_model

        return build_graph_model(config.model, input_specs(config.model, splits.x_train), name=config.name)  # type: ignore[arg-type]
    return build_model(config.model.layers, config.model.input_shape or splits.input_shape, name=config.name)


def compile_configured(model: Any, config: ExperimentConfig, optimizer: dict[str, Any] | None = None, **speed: Any) -> None:
    """Compile with the optimizer (default: the config's; a phase may bring its own) and, for a graph, each output's
    loss, metrics and loss weight. `speed`: steps_per_execution and jit_compile."""
    m = config.model
    optimizer = optimizer or config.optimizer.model_dump()
    if not m.is_graph:
        compile_model(model, optimizer, m.loss, m.metrics, **speed)  # type: ignore[arg-type]
        return
    outputs = m.outputs or {}
    compile_model(
        model,
        optimizer,
        {n: s["loss"] for n, s in outputs.items()},
        {n: list(s["metrics"]) for n, s in outputs.items() if s.get("metrics")},
        loss_weights={n: float(s.get("loss_weight", 1.0)) for n, s in outputs.items()},
        **speed,
    )


def check_all_labels(model: Any, config: ExperimentConfig, splits: Any) -> None:
    if not config.model.is_graph:
        check_labels(model, config.model.loss, splits)
        return
    for name, spec in (config.model.outputs or {}).items():
        units = model.get_layer(name).output.shape[-1]
        y = splits.y_train[name]  # type: ignore[index]
        check_output_labels(units, spec["loss"], y, loss_key=f"model.outputs.{name}.loss", layer_key=f"model.outputs.{name}")


def first_nan_epoch(history: dict[str, list[float]]) -> int | None:
    for i, value in enumerate(history.get("loss", [])):
        if not math.isfinite(value):
            return i
    return None


def feeds_of(splits: DataSplits) -> Feeds:
    """What feeds fit/evaluate: a stream feeds itself; arrays go through tf.data (`training.feeds.ArrayFeeds`)."""
    return splits.feeds(ArrayFeeds)


def feed(splits: DataSplits, name: str, batch_size: int, **tuning: Any) -> Any:
    """Batches of split `name` ("train", "validation", "test"), one pass in order, for evaluate/predict."""
    return feeds_of(splits).feed(name, batch_size, **tuning)


def input_example(splits: DataSplits, count: int) -> np.ndarray:
    """The first `count` test inputs as the model sees them (an input example for the logged model)."""
    return feeds_of(splits).input_example(count)


def prepare_inputs(config: ExperimentConfig, splits: DataSplits, output_dir: Path) -> DataSplits:
    """Write the source's files for people (classes.json, the augmentation preview, a text vocabulary), and swap images
    for cached base features."""
    splits.write_files(output_dir, seed=config.seed, preview=config.dataset.augment_preview)
    if config.features is not None:
        from expkit.data.features import extract_features

        root = Path(config.features.cache_dir or Path(config.paths.root_dir) / ".expkit" / "features").expanduser()
        splits = extract_features(splits, config.features.base, config.features.weights, root)  # type: ignore[arg-type]
    return splits


def train_and_evaluate(
    config: ExperimentConfig,
    splits: DataSplits,
    output_dir: Path,
    epoch_callbacks: list[Any] | None = None,
    *,
    stop: StopRequest | None = None,
    resume_from: TrainingState | None = None,
    objective: Objective | None = None,
    test: bool = True,
    epochs: int | None = None,
    tensorboard_dir: Path | None = None,
) -> Outcome:
    """Build, fit (phase by phase), checkpoint and (with `test`) test the model described by `config` on `splits`.

    `epoch_callbacks` see only complete epochs, after the resumable state for that epoch is saved.
    With `resume_from`, weights, optimizer state and epoch count continue from that state, in its phase.
    The best checkpoint follows `objective` (default: the config's), or trainer.checkpoint_monitor.
    Protocols pass test=False, choose on the history, and call `evaluate_test` afterwards; `epochs` overrides
    trainer.epochs (retraining for the best epoch count). TensorBoard logs go to `tensorboard_dir`
    (default: <output_dir>/tensorboard).
    """
    import keras

    trainer = config.trainer
    stop = stop or StopRequest()
    configure_runtime(config.seed, deterministic=trainer.deterministic, threads=trainer.threads, cpu_devices=trainer.cpu_devices)
    strategy = make_strategy(trainer.strategy)
    if is_distributed(strategy):
        print(f"{type(strategy).__name__}: {strategy.num_replicas_in_sync} replicas, global batch {trainer.batch_size}", file=sys.stderr)
    output_dir.mkdir(parents=True, exist_ok=True)
    splits = prepare_inputs(config, splits, output_dir).for_model(config.model)
    feeds = feeds_of(splits)
    phases = plan_phases(config, epochs)
    objective = objective or Objective.from_config(getattr(config, "objective", None))
    batch = trainer.batch_size
    steps = feeds.steps("train", batch)
    user_callbacks = make_callbacks(config.callbacks, output_dir, objective)
    speed = {
        "steps_per_execution": feeding.steps_per_execution(
            # A multi-step call stops at the epoch's end, except over image streams and across replicas (Keras fails there).
            trainer.steps_per_execution,
            steps,
            user_callbacks,
            epoch_ends=feeds.epoch_ends and not is_distributed(strategy),
        ),
        "jit_compile": trainer.jit_compile,
    }
    # Layers take the dtype policy (mixed precision) they are built under; nothing else does (see training.precision).
    with dtype_policy(trainer.dtype_policy), strategy.scope():  # variables (model and optimizer) are created once per replica
        model = build_configured_model(config, splits)  # type: ignore[arg-type]
        check_float32_outputs(model)
        built_trainable = remember_trainable(model)
        compile_configured(model, config, phases[0].optimizer, **speed)
    check_all_labels(model, config, splits)  # type: ignore[arg-type]

    ckpt_dir = output_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    has_validation = splits.has_validation
    monitor = trainer.checkpoint_monitor or (objective.metric if has_validation else "loss")
    mode = objective.mode if monitor == objective.metric else direction(monitor)
    checkpoints = {"best": ckpt_dir / "best.keras", "final": ckpt_dir / "final.keras"}
    initial_epoch, history, best = 0, {}, None
    if resume_from is not None:
        saved_in = next((p for p in phases if p.start <= resume_from.epoch < p.end), phases[-1])
        with strategy.scope():
            set_trainable(model, saved_in.trainable_from, built_trainable, f"phases.{saved_in.index}.trainable_from")
            compile_configured(model, config, saved_in.optimizer, **speed)
            model.optimizer.build(model.trainable_variables)
            model.load_weights(resume_from.weights)
        initial_epoch, history, best = resume_from.epoch + 1, resume_from.history, resume_from.best

    epoch_state = EpochState(ckpt_dir / "resume", history, monitor, best, mode=mode)
    best_checkpoint = keras.callbacks.ModelCheckpoint(
        str(checkpoints["best"]), monitor=monitor, mode=mode, save_best_only=True, initial_value_threshold=best
    )
    recorders = [best_checkpoint, epoch_state, *(epoch_callbacks or [])]
    callbacks = [*user_callbacks, StopOnRequest(stop), CompleteEpochsOnly(stop, recorders)]
    attach_data(callbacks, splits, output_dir)
    tb = config.tracking.tensorboard
    if tb.enabled:
        log_dir = tensorboard_dir or output_dir / "tensorboard"
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(log_dir), histogram_freq=tb.histogram_freq))

    # Big arrays are read in place by tf.data, except under a strategy (its dataset rewrite would copy them).
    tuning = {"prefetch": trainer.prefetch, "threads": trainer.threads, "share": not is_distributed(strategy)}
    validation = feeds.feed("validation", batch, **tuning) if has_validation else None
    resumed_phase = next((p.index for p in phases if p.start <= initial_epoch - 1 < p.end), None) if resume_from else None
    for phase in phases:
        if phase.end <= initial_epoch or stop.signum is not None:
            continue
        if phase.index != resumed_phase:  # a new phase: its trainable layers and a fresh optimizer (the resumed one keeps its state)
            with strategy.scope():
                set_trainable(model, phase.trainable_from, built_trainable, f"phases.{phase.index}.trainable_from")
                compile_configured(model, config, phase.optimizer, **speed)
        first = max(initial_epoch, phase.start)
        train, steps_per_epoch, data_callbacks = feeds.training_feed(
            batch, shuffle=trainer.shuffle, seed=config.seed, epoch=first, epochs=phase.end, **tuning
        )
        model.fit(
            train,
            epochs=phase.end,
            initial_epoch=first,
            steps_per_epoch=steps_per_epoch,
            verbose=1 if trainer.verbose == "auto" else trainer.verbose,  # the app resolves auto for its terminal
            validation_data=validation,
            shuffle=False,  # batches are shuffled reproducibly per epoch by the feed (Feeds.training_feed)
            # Added after steps_per_execution is chosen: the bar is Keras' own, redrawn only when a call returns.
            callbacks=[*data_callbacks, *callbacks, *progress_bars(1 if trainer.verbose == "auto" else int(trainer.verbose), steps)],
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
    if is_distributed(strategy):
        # Test metrics, plots and the logged model come from a plain copy, outside the strategy (one device, no replicas).
        with dtype_policy(trainer.dtype_policy):  # compiled as saved: a mixed_float16 model with its loss-scaled optimizer
            model = keras.models.load_model(checkpoints["final"])
    outcome = Outcome(model, history, {}, checkpoints, splits)
    if test:
        evaluate_test(outcome, splits, output_dir, batch, config=config, monitor=monitor)
    return outcome


def evaluate_test(
    outcome: Outcome,
    splits: DataSplits,
    output_dir: Path,
    batch_size: int,
    *,
    config: ExperimentConfig | None = None,
    **summary: Any,
) -> dict[str, float]:
    """Evaluate the trained model on test data once, after selection; writes metrics.json and fills outcome.test_metrics.

    With `config`, each classification head also gets the books' random baseline (`baseline_<metric>`).
    """
    history = outcome.history
    splits = outcome.splits or splits  # as the model saw them (named by input/output for graph models)
    heads = classifier_heads(config.model.head_losses()) if config is not None else {}
    with confusion_tally(outcome.model, heads) as outcome.confusion:
        test = outcome.model.evaluate(feed(splits, "test", batch_size), verbose=0, return_dict=True)
    outcome.test_metrics = {f"test_{k}": float(v) for k, v in test.items()}
    if config is not None:  # each classification head's exact random baseline (expkit.training.baseline)
        outcome.test_metrics |= random_baseline(outcome.model, splits.y_test, set(outcome.test_metrics))
    record = {
        "test": outcome.test_metrics,
        "epochs_run": len(history.get("loss", [])),
        "final": {k: v[-1] for k, v in history.items()},
        **summary,
    }
    (output_dir / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    return outcome.test_metrics
