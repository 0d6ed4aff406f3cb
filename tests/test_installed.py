"""expkit.tracking.installed: MLflow's requirement check, seeded with the required packages only, gives MLflow's own answers."""

from __future__ import annotations

import json
import subprocess
import sys

CHECK = """
import json, sys
import keras, mlflow, numpy, tensorflow
import mlflow.utils.requirements_utils as utils
pinned = [f"{m.__name__}=={m.__version__}" for m in (keras, tensorflow, mlflow, numpy)]
utils._MODULES_TO_PACKAGES = None  # as in a fresh process, whatever expkit's imports did
if sys.argv[1] == "seeded":
    from expkit.tracking.installed import seed_requirement_map
    assert seed_requirement_map(pinned)
wrong = [r.split("==")[0] + "==0.0.1" for r in pinned if not r.startswith("mlflow")]
answers = [str(utils._check_requirement_satisfied(r)) for r in pinned + wrong + ["no-such-package-xyz==1.0"]]
print(json.dumps({"answers": answers, "full_map_built": utils._MODULES_TO_PACKAGES is not None and len(utils._MODULES_TO_PACKAGES) > 50}))
"""


def check(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHECK, mode], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


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
