"""`expkit evaluate`: a trained run's model on another split or dataset, logged to the same run under its own name."""

from __future__ import annotations

import re

from expkit.errors import ExpkitError
from expkit.stored.run import open_run

SPLITS = ("test", "validation", "train")


def evaluate(ref: str, overrides: list[str], *, split: str, name: str | None, uri: str | None) -> tuple[str, dict[str, float]]:
    """Evaluate run `ref`'s model on `split` of its dataset with `overrides` (dataset.* keys); returns (label, metrics)."""
    from expkit.data import load_splits
    from expkit.training.batches import ArrayBatches

    if split not in SPLITS:
        raise ExpkitError(f"unknown split '{split}'", key="--split", hint=", ".join(SPLITS))
    for item in overrides:
        if not item.startswith(("dataset.", "paths.data_dir=")):
            raise ExpkitError(f"'{item}' is not a dataset override", hint="evaluate changes only dataset.* keys (and paths.data_dir)")
    stored = open_run(ref, uri)
    config = stored.config(overrides)
    splits = load_splits(config.dataset, data_dir=config.paths.data_dir, seed=config.seed)
    splits = splits.for_model(config.model)  # arrays keyed by input/output name (npz, random, text_dir), as the model was trained
    x, y = {"test": (splits.x_test, splits.y_test), "validation": (splits.x_val, splits.y_val), "train": (splits.x_train, splits.y_train)}[
        split
    ]
    if x is None or y is None:
        raise ExpkitError("this dataset config has no validation split", key="--split", hint="set dataset.validation.holdout=N")
    model = stored.training_model()
    from expkit.training.compile import compile_model

    compile_model(model, config.optimizer.model_dump(), config.model.loss, config.model.metrics)
    values = model.evaluate(ArrayBatches(x, y, config.trainer.batch_size), verbose=0, return_dict=True)
    label = name or f"{config.dataset.name}_{split}"
    if not re.fullmatch(r"[\w.-]+", label):
        raise ExpkitError(f"'{label}' is not a usable name", key="--name", hint="letters, digits, _ . -")
    from expkit.tracking.values import readable
    from expkit.tracking.writes import log_metrics

    metrics = {f"eval/{label}/{k}": readable(v) for k, v in values.items()}  # as stored: float32's shortest decimal
    log_metrics(stored.client, stored.run_id, metrics)
    if overrides:
        stored.client.set_tag(stored.run_id, f"eval.{label}.overrides", " ".join(overrides))
    return label, metrics
