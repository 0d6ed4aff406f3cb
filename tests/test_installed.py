"""expkit.tracking.installed: MLflow's requirement check, seeded with the required packages only, gives MLflow's own answers."""

from __future__ import annotations


def check(mode: str) -> dict:
    """MLflow's answers for the pinned packages, wrong versions and a missing package, from a map built as a new process
    builds it (`full`: MLflow maps every installed package) or seeded by expkit (`seeded`). In this process: the map is
    module state, set aside and restored around the check."""
    import keras
    import mlflow
    import mlflow.utils.requirements_utils as utils
    import numpy
    import tensorflow

    from expkit.tracking.installed import seed_requirement_map

    pinned = [f"{m.__name__}=={m.__version__}" for m in (keras, tensorflow, mlflow, numpy)]
    wrong = [r.split("==")[0] + "==0.0.1" for r in pinned if not r.startswith("mlflow")]
    kept = utils._MODULES_TO_PACKAGES
    utils._MODULES_TO_PACKAGES = None  # as in a fresh process, whatever this process's imports and tests did
    try:
        if mode == "seeded":
            assert seed_requirement_map(pinned)
        answers = [str(utils._check_requirement_satisfied(r)) for r in pinned + wrong + ["no-such-package-xyz==1.0"]]
        built = utils._MODULES_TO_PACKAGES is not None and len(utils._MODULES_TO_PACKAGES) > 50
    finally:
        utils._MODULES_TO_PACKAGES = kept
    return {"answers": answers, "full_map_built": built}


def test_seeded_requirement_check_answers_as_mlflow_does_without_mapping_every_package() -> None:
    full, seeded = check("full"), check("seeded")
    assert seeded["answers"] == full["answers"]
    assert full["answers"][:4] == ["None"] * 4  # the pinned requirements hold here
    assert all(a != "None" for a in full["answers"][4:])  # wrong versions and a missing package are reported
    assert full["full_map_built"] and not seeded["full_map_built"]


def test_requirement_map_agrees_with_packages_distributions() -> None:
    import importlib.metadata

    from expkit.tracking.installed import requirement_map

    everything = importlib.metadata.packages_distributions()
    mine = requirement_map(["keras==1", "tensorflow==1", "numpy==1", "mlflow==1"])
    assert {"keras", "tensorflow", "numpy", "mlflow"} <= set(mine)
    for module, dists in mine.items():
        assert set(dists) <= set(everything[module]), module
