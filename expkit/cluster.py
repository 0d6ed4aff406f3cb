"""Sweeps beyond one machine: which launchers are remote, the shared-store guard, and the dataset check on workers.

Imports nothing heavy: these run as Hydra callbacks, in the launching process (store) and in each job (data).
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from expkit.errors import ExpkitError
from expkit.tracking.store import is_local_store, tracking_uri

# Launchers whose jobs run on the launching machine, where a SQLite or file store is shared by every job.
LOCAL_LAUNCHERS = ("BasicLauncher", "JoblibLauncher", "submitit_launcher.LocalLauncher")
SERVER_HINT = "start a team server with `expkit server` and pass tracking.uri=http://HOST:5000 (or set MLFLOW_TRACKING_URI to it)"


def launcher_is_remote(launcher: Any) -> bool:
    """True when the launcher may run jobs on other machines (SLURM, a Ray cluster given by address, any unknown launcher)."""
    target = str(OmegaConf.select(launcher, "_target_", default="") or "") if launcher is not None else ""
    if not target or any(target.endswith(name) for name in LOCAL_LAUNCHERS):
        return False
    if target.endswith("RayLauncher"):  # without an address it starts a local Ray instance on this machine
        address = OmegaConf.select(launcher, "ray.init.address", default=None)
        return address not in (None, "", "local")
    return True


def check_shared_store(config: DictConfig) -> None:
    """Refuse a local (SQLite or file) store when jobs may run on other machines: each would write to its own disk."""
    if not OmegaConf.select(config, "tracking.enabled", default=False):
        return
    if OmegaConf.select(config, "tracking.allow_local_store_on_cluster", default=False):
        return
    launcher = OmegaConf.select(config, "hydra.launcher", default=None)
    if not launcher_is_remote(launcher):
        return
    uri = tracking_uri(OmegaConf.select(config, "tracking.uri", default=None), str(OmegaConf.select(config, "paths.root_dir")))
    if is_local_store(uri):
        name = str(OmegaConf.select(launcher, "_target_")).rsplit(".", 1)[-1]
        raise ExpkitError(
            f"{uri} is a local store, but {name} may run jobs on other machines, which would each write runs to their own disk",
            key="tracking.uri",
            hint=SERVER_HINT + "; a cluster with a shared file system may set tracking.allow_local_store_on_cluster=true",
        )


def is_cluster_launcher(launcher: Any) -> bool:
    """Ray or submitit (SLURM or its local executor): jobs run in processes the launcher starts, possibly elsewhere."""
    target = str(OmegaConf.select(launcher, "_target_", default="") or "") if launcher is not None else ""
    return "ray_launcher" in target or "submitit_launcher" in target


def check_data_on_worker(config: DictConfig) -> None:
    """The dataset file (or data folder) must exist on the machine the job landed on."""
    for key in ("dataset.path", "paths.data_dir"):
        value = OmegaConf.select(config, key, default=None)
        if value and not Path(str(value)).exists():
            raise ExpkitError(
                f"{value} does not exist on host {platform.node()}, where this sweep job runs",
                key=key,
                hint="put the data on a path every worker mounts (shared file system), or copy it to the same path on every "
                "worker; Keras datasets can also come from each worker's $KERAS_HOME/datasets cache",
            )


def _exit_on_error(check: Any, config: DictConfig) -> None:
    """Hydra turns exceptions in callbacks into warnings: report the error and exit 2 instead."""
    try:
        check(config)
    except ExpkitError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)


class ClusterChecks(Callback):
    """Before any job launches: refuse a local store for a remote launcher. In each cluster job: the data is there."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _exit_on_error(check_shared_store, config)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if is_cluster_launcher(OmegaConf.select(config, "hydra.launcher", default=None)):
            _exit_on_error(check_data_on_worker, config)
