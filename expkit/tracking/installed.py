"""MLflow's check of a logged model's pinned requirements, without mapping every installed package first.

Before it checks a requirement (`keras==3.15.1`), MLflow maps every installed distribution to the
modules it provides (`importlib.metadata.packages_distributions()`, reading each one's file list):
0.6 s of CPU in a training process, every run and every sweep worker, for four lookups. It uses the
map only to find the module of a package whose version `importlib.metadata` cannot read, and to infer
the requirements of a model logged without them. expkit logs every model with explicit, pinned
requirements (`tracking.run.requirements`), so no inference happens in a training process, and the
check needs only the entries of those packages: `seed_requirement_map` puts exactly these in MLflow's
map, read from their own distributions, before MLflow would build it. The check's result, and the
logged model, are the same (tests/test_installed.py).
"""

from __future__ import annotations

import importlib.metadata
from typing import Any


def distribution_modules(dist: importlib.metadata.Distribution) -> list[str]:
    """The top-level modules a distribution provides, read as `importlib.metadata.packages_distributions` reads them."""
    declared = (dist.read_text("top_level.txt") or "").split()
    if declared:
        return declared
    return sorted({f.parts[0] if len(f.parts) > 1 else f.with_suffix("").name for f in dist.files or [] if f.suffix == ".py"})


def requirement_map(requirements: list[str]) -> dict[str, list[str]]:
    """{module: [distribution]} for the distributions of `requirements` (e.g. 'tensorflow' -> ['tensorflow-cpu'])."""
    from packaging.requirements import Requirement

    modules: dict[str, list[str]] = {}
    for text in requirements:
        name = Requirement(text).name
        candidates = [name, f"{name}-cpu", f"{name}_cpu"] if name == "tensorflow" else [name]
        for candidate in candidates:
            try:
                dist = importlib.metadata.distribution(candidate)
            except importlib.metadata.PackageNotFoundError:
                continue
            for module in distribution_modules(dist):
                modules.setdefault(module, []).append(dist.metadata["Name"])
            break
    return modules


def seed_requirement_map(requirements: list[str]) -> bool:
    """Give MLflow's requirement check the map entries of `requirements` only; False if MLflow built its map already."""
    import mlflow.utils.requirements_utils as utils

    if getattr(utils, "_MODULES_TO_PACKAGES", None) is not None:
        return False
    seeded: dict[str, Any] = requirement_map(requirements)
    seeded.update(getattr(utils, "MLFLOW_MODULES_TO_PACKAGES", {}))  # as MLflow's own map adds them
    utils._MODULES_TO_PACKAGES = seeded
    return True
