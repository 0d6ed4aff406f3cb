"""Facts about the environment a run was made in: installed versions, the git commit, a logged model's requirements.

Plain functions with no state, shared by the training run (`tracking/run.py`), the served models and `expkit reproduce`.
"""

from __future__ import annotations

import subprocess


def requirements() -> list[str]:
    """Pinned pip requirements of a logged model (passed explicitly: inferring them takes seconds)."""
    import keras
    import mlflow
    import numpy as np
    import tensorflow as tf

    from expkit.tracking.installed import seed_requirement_map

    pins = [f"keras=={keras.__version__}", f"tensorflow=={tf.__version__}", f"mlflow=={mlflow.__version__}", f"numpy=={np.__version__}"]
    seed_requirement_map(pins)  # MLflow's requirement check then looks up these four packages only (see installed.py)
    return pins


def package_version(*names: str) -> str | None:
    """The installed version of the first of `names` found, read from package metadata (no import)."""
    from importlib.metadata import PackageNotFoundError, version

    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def git_state(path: str) -> dict[str, str]:
    """Commit and dirty flag of the git repo containing `path`, if any."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return {}
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=path, capture_output=True, text=True, timeout=5)
        return {"git.commit": commit.stdout.strip(), "git.dirty": str(bool(dirty.stdout.strip())).lower()}
    except (OSError, subprocess.SubprocessError):
        return {}
