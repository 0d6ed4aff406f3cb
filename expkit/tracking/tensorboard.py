"""TensorBoard beside MLflow: a run folder named after the MLflow run, HParams for sweep comparison, test metrics."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


def run_folder(base: Path, run_name: str, run_id: str) -> Path:
    """<base>/<run name>_<first 8 of the run id>: TensorBoard lists runs by folder, so this links them to MLflow."""
    safe = re.sub(r"[^\w.=+-]+", "_", run_name).strip("_")[:80] or "run"
    return base / f"{safe}_{run_id[:8]}"


def hparam_value(value: Any) -> bool | int | float | str:
    return value if isinstance(value, bool | int | float | str) else str(value)


def write_hparams(log_dir: Path, params: dict[str, Any], metrics: dict[str, float], step: int, run_name: str, run_id: str) -> None:
    """The run's params as HParams, and its final and test metrics as scalars the HParams view shows beside them."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        hp.hparams({k: hparam_value(v) for k, v in params.items()}, trial_id=f"{run_name} ({run_id})")
        for key, value in metrics.items():
            tf.summary.scalar(key, float(value), step=step)
    writer.close()
