"""Which config keys a run logs as MLflow params: one param per knob, and only the keys that apply to the run.

- **Derived values are not knobs.** A value written as an interpolation of other keys (`units: ${model.units}`
  in a layer, `layers: ${expkit.stack:${model.depth},...}`) repeats those keys; only the keys it refers to are logged.
  Without this, `model.layers.0.units` sat beside `model.units`, and MLflow's parallel-coordinates view and
  `expkit runs compare --sweep` showed the same knob twice.
- **Options of another source do not apply.** `dataset.color_mode` or `dataset.on_bad_image` mean nothing to MNIST.
- **Empty lists and mappings** (`phases: []`, `dataset.augment: []`) describe nothing that happened.
- **Bookkeeping** (where files go, how the run is tracked or printed, sweep failure policy) is not the experiment.

Pure OmegaConf: no TensorFlow, no MLflow.
"""

from __future__ import annotations

import re
from typing import Any

from omegaconf import DictConfig, OmegaConf

#: Config keys that are bookkeeping, not the experiment: where files go, how it is tracked, how chatty it is.
NOT_PARAMS = ("paths.", "tracking.", "trainer.verbose", "trainer.threads", "hydra.", "sweep.")
#: Dataset options that only one source reads (see the comments in conf/dataset/_base.yaml).
SOURCE_OPTIONS = {
    "image_dir": ("image_size", "color_mode", "cache", "on_bad_image", "augment", "augment_preview"),
    "sklearn": ("test_fraction",),
}
#: `${a.b}`: a reference to another config key.
_REFERENCE = re.compile(r"\$\{[\w.\[\]-]+\}")
#: What is left of a value built by one of expkit's resolvers from references only: `${expkit.stack:,,}`.
_EXPKIT_RESOLVER = re.compile(r"\$\{expkit\.\w+:[^${}]*\}")


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': [1, 2]}} -> {'a.b.0': 1, 'a.b.1': 2}; an empty list or mapping becomes '[]' or '{}'."""
    if isinstance(node, dict):
        items = list(node.items())
    elif isinstance(node, list):
        items = list(enumerate(node))
    else:
        return {prefix: node}
    out: dict[str, Any] = {}
    for k, v in items:
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    if not out and prefix:
        out[prefix] = "[]" if isinstance(node, list) else "{}"
    return out


def is_derived(raw: Any) -> bool:
    """Whether a config value, as written, is computed from other keys only (and so is no knob of its own)."""
    if not isinstance(raw, str) or "${" not in raw:
        return False
    rest = _REFERENCE.sub("", raw)
    return "${" not in rest or _EXPKIT_RESOLVER.fullmatch(rest.strip()) is not None


def derived_keys(cfg: DictConfig) -> list[str]:
    """The dotted keys of `cfg` whose values are written as interpolations of other keys."""
    raw = OmegaConf.to_container(cfg, resolve=False)
    return [key for key, value in flatten(raw).items() if is_derived(value)]


def applies(key: str, value: Any, source: str | None) -> bool:
    """Whether a flattened, resolved config entry describes this run (see the module docstring)."""
    if value is None or value in ("[]", "{}") or key.startswith(NOT_PARAMS):
        return False
    for owner, options in SOURCE_OPTIONS.items():
        if source != owner and any(key == f"dataset.{o}" or key.startswith(f"dataset.{o}.") for o in options):
            return False
    return True


def run_params(resolved: dict[str, Any], derived: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    """The params a run logs: the resolved config, flattened, minus derived keys and what does not apply."""
    flat = flatten(resolved)
    source = flat.get("dataset.source")
    return {k: v for k, v in flat.items() if applies(k, v, source) and not any(k == d or k.startswith(d + ".") for d in derived)}
