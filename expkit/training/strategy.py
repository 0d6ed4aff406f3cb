"""tf.distribute for `trainer.strategy`: default (one device), mirrored (all local devices), multi_worker_mirrored (TF_CONFIG).

The batch size stays the global batch: each step's batch is split across the replicas.
With multi_worker_mirrored every worker runs the same `expkit train`; only the chief tracks to MLflow and
writes the run folder, the others write below it (worker-N/).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from expkit.errors import ExpkitError


def worker_role() -> tuple[str, int]:
    """(task type, index) of this process from $TF_CONFIG; ("chief", 0) without one."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return "chief", 0
    try:
        task = json.loads(raw)["task"]
        return str(task["type"]), int(task["index"])
    except (ValueError, KeyError, TypeError) as exc:
        hint = 'TF_CONFIG=\'{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}\''
        raise ExpkitError(f"TF_CONFIG is not valid: {exc}", key="TF_CONFIG", hint=hint) from None


def is_chief() -> bool:
    """The chief is task `chief`, or worker 0 when the cluster has no chief."""
    kind, index = worker_role()
    if kind == "chief":
        return True
    cluster = json.loads(os.environ["TF_CONFIG"]).get("cluster", {})
    return kind == "worker" and index == 0 and "chief" not in cluster


def apply_worker_role(config: Any) -> None:
    """Under multi_worker_mirrored, a non-chief worker logs nothing to MLflow and writes into <output_dir>/<type>-<index>."""
    if config.trainer.strategy != "multi_worker_mirrored":
        return
    if not os.environ.get("TF_CONFIG"):
        raise ExpkitError(
            "trainer.strategy=multi_worker_mirrored needs TF_CONFIG (the cluster and this worker's task) in the environment",
            key="trainer.strategy",
            hint="start one `expkit train` per worker, each with its own TF_CONFIG; or use trainer.strategy=mirrored on one machine",
        )
    if is_chief():
        return
    kind, index = worker_role()
    config.tracking.enabled = False
    config.paths.output_dir = str(Path(config.paths.output_dir) / f"{kind}-{index}")


def split_cpu(devices: int) -> None:
    """Show TensorFlow `devices` logical CPUs (mirrored training on a machine without GPUs). Call before TF initialises."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    # TF already initialised in this process (a reused sweep worker): keep its devices.
    with contextlib.suppress(RuntimeError):
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(devices)])


def make_strategy(name: str) -> Any:
    """The tf.distribute strategy for `trainer.strategy`."""
    import tensorflow as tf

    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_distributed(strategy: Any) -> bool:
    return bool(strategy.num_replicas_in_sync > 1 or type(strategy).__name__ != "_DefaultDistributionStrategy")
