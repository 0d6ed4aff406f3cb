"""Types and obvious ranges of common Keras constructor arguments, checked without importing Keras.

The catalog (keras_catalog.json) says which arguments a layer takes; this table says what those arguments must
hold. A value the build would reject (`units: "one hundred"`, `12.5`, `-3`, `0`) is then reported by
`expkit validate`, not only by `--build` or by a run.
"""

from __future__ import annotations

from typing import Any

# Counts: a positive whole number.
POSITIVE_INT = {"units", "filters", "num_heads", "key_dim", "value_dim", "output_dim", "input_dim", "depth_multiplier", "n"}
# Window sizes: a positive whole number or a list of them (null where Keras allows it, e.g. pooling strides).
POSITIVE_INT_OR_LIST = {"kernel_size", "strides", "pool_size", "dilation_rate", "size"}
# Fractions of units dropped: a number in [0, 1).
RATE = {"rate", "dropout", "recurrent_dropout"}
# Switches.
BOOL = {"use_bias", "return_sequences", "return_state", "go_backwards", "stateful", "unroll", "trainable"}
# Optimizer and callback settings: waits and counts (0 allowed), and factors in [0, 1].
NON_NEGATIVE_INT = {"patience", "start_from_epoch", "cooldown"}
UNIT_INTERVAL = {"momentum", "beta_1", "beta_2", "rho", "ema_momentum"}
# Arguments that may be null.
NULLABLE = POSITIVE_INT_OR_LIST | BOOL - {"trainable"}


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def argument_problem(name: str, value: Any) -> tuple[str, str | None] | None:
    """(message, hint) when `value` cannot be the argument `name` (a $placeholder of a graph block is left alone)."""
    known = POSITIVE_INT | POSITIVE_INT_OR_LIST | RATE | BOOL | NON_NEGATIVE_INT | UNIT_INTERVAL
    if name not in known or (isinstance(value, str) and value.startswith("$")):
        return None
    if value is None:
        return None if name in NULLABLE else (f"{name} must be set, got null", "give a value or remove the key")
    if name in POSITIVE_INT:
        if not _whole(value):
            return f"must be a whole number, got {value!r}", f"e.g. {name}: 64"
        if value < 1:
            return f"must be at least 1, got {value}", f"e.g. {name}: 64"
    elif name in POSITIVE_INT_OR_LIST:
        items = value if isinstance(value, list) else [value]
        if not items or not all(_whole(v) and v >= 1 for v in items):
            return f"must be a positive whole number or a list of them, got {value!r}", f"e.g. {name}: 3 or {name}: [3, 3]"
    elif name in RATE:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be a number in [0, 1), got {value!r}", "0.5 drops half the units"
        if not 0 <= value < 1:
            return f"must be in [0, 1), got {value}", "0.5 drops half the units"
    elif name in NON_NEGATIVE_INT and not (_whole(value) and value >= 0):
        return f"must be a whole number >= 0, got {value!r}", f"e.g. {name}: 3"
    elif name in UNIT_INTERVAL and (isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1):
        return f"must be a number in [0, 1], got {value!r}", f"e.g. {name}: 0.9"
    elif name in BOOL and not isinstance(value, bool):
        return f"must be true or false, got {value!r}", None
    return None


#: pydantic error types -> a plain sentence and a hint.
PYDANTIC_PLAIN = {
    "int_parsing": ("must be a whole number", "write digits, e.g. 10: no words, no decimals"),
    "int_type": ("must be a whole number", "write digits, e.g. 10"),
    "int_from_float": ("must be a whole number", "drop the decimals, e.g. 10"),
    "float_parsing": ("must be a number", "write digits, e.g. 0.001 or 1e-3"),
    "float_type": ("must be a number", "write digits, e.g. 0.001 or 1e-3"),
    "bool_parsing": ("must be true or false", None),
    "bool_type": ("must be true or false", None),
    "string_type": ("must be a string", None),
    "list_type": ("must be a list", "e.g. [a, b]"),
    "dict_type": ("must be a mapping", "e.g. {key: value}"),
}
BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


def plain_pydantic(err: Any) -> tuple[str, str | None] | None:
    """A pydantic error in plain words with a hint, or None to keep pydantic's message."""
    kind, got = err["type"], err.get("input")
    if kind in PYDANTIC_PLAIN:
        message, hint = PYDANTIC_PLAIN[kind]
        return f"{message}, got {got!r}", hint
    if kind in BOUNDS:
        (bound,) = err.get("ctx", {}).values() or [None]
        return f"must be {BOUNDS[kind]} {bound}, got {got!r}", None
    if kind == "literal_error":
        return f"must be one of {err.get('ctx', {}).get('expected', '?')}, got {got!r}", None
    return None
