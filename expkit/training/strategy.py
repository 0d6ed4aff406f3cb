"""tf.distribute for `trainer.strategy`: default (one device) or mirrored (every local GPU, or logical CPUs).

The batch size stays the global batch: each step's batch is split across the replicas.
"""

from __future__ import annotations

import contextlib
from typing import Any

from expkit.errors import ExpkitError


def check_strategy(name: str) -> None:
    """Refuse, before TensorFlow starts, a strategy this Keras cannot train with."""
    if name == "multi_worker_mirrored":
        raise ExpkitError(
            "multi_worker_mirrored does not train under Keras 3's TensorFlow trainer: it reduces the first batch and scalar "
            "metrics across workers in ways MultiWorkerMirroredStrategy rejects (tensorflow/tensorflow#72388; Keras 3.15, TF 2.21)",
            key="trainer.strategy",
            hint="use trainer.strategy=mirrored for all devices of one machine, and hydra/launcher=ray or slurm to spread a sweep",
        )


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
        return tf.distribute.MirroredStrategy(devices=[d.name for d in (gpus or tf.config.list_logical_devices("CPU"))])
    return tf.distribute.get_strategy()


def is_distributed(strategy: Any) -> bool:
    return type(strategy).__name__ != "_DefaultDistributionStrategy"
