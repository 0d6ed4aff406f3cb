"""Mixed precision: the Keras dtype policy a run's model is built under (`trainer.mixed_precision` / `trainer.precision`).

Under `mixed_float16` or `mixed_bfloat16` the layers compute in 16 bits and keep float32 variables. The
output layers are built with a float32 policy (`expkit.models.builder.output_spec`), so the final activation,
the model's outputs and the losses (Keras builds losses in float32 whatever the policy) stay float32. Keras
3 wraps the optimizer in a `LossScaleOptimizer` when a `mixed_float16` model is compiled (`auto_scale_loss`,
keras/src/trainers/trainer.py); bfloat16 has float32's range and needs no loss scaling.

A layer takes the global policy when it is built, and keeps it: saved, loaded, and in the inference model built
around it later. So the policy is set only while the model is built and first compiled (`dtype_policy`), after
`clear_session` (which resets it), and restored right after: feature extraction, data pipelines, the inference
model's preprocessing layers and the next job of a reused sweep worker all see float32. Compiling again (a new
phase, a resumed run) keeps the wrapping, which follows the model's own policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from expkit.errors import ExpkitError

FLOAT32 = "float32"


def set_policy(name: str) -> None:
    """Make `name` the global dtype policy for the models built from now on in this thread."""
    import keras

    keras.config.set_dtype_policy(name)


def current_policy() -> str:
    import keras

    return str(keras.config.dtype_policy().name)


@contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Models built in this block take policy `name`; the policy in force before is back afterwards (also after an error)."""
    previous = current_policy()
    set_policy(name)
    try:
        yield
    finally:
        set_policy(previous)


def check_float32_outputs(model: Any) -> None:
    """Every output of a model built under a mixed policy must be float32 (the output layers' own policy)."""
    if current_policy() == FLOAT32:
        return
    import keras

    outputs = model.outputs if isinstance(model.outputs, list) else keras.tree.flatten(model.outputs)
    names = getattr(model, "output_names", None) or [str(i) for i in range(len(outputs))]
    for name, tensor in zip(names, outputs, strict=False):
        if str(tensor.dtype) != FLOAT32:
            raise ExpkitError(
                f"under trainer precision {current_policy()} the model's output '{name}' is {tensor.dtype}, not float32",
                key="model",
                hint="give the output layer `dtype: float32` (a custom or application layer does not get it automatically)",
            )
