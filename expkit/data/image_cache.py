"""The image pipeline's tf.data disk cache: one writer per cache file, and stale locks of killed runs removed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from expkit.errors import ExpkitError


def claim_cache(prefix: Path) -> None:
    """Make this process the writer of the tf.data disk cache at `prefix`.

    tf.data leaves `<prefix>_0.lockfile` behind when a run is killed while writing the cache, and every later run
    then fails with AlreadyExistsError. The writer's pid is kept beside the cache (`<prefix>.owner`): a lock whose
    writer is gone is removed with its partial data; a lock held by a live run on this host is a clear error.
    """
    import socket

    owner_file = prefix.with_name(prefix.name + ".owner")
    host = socket.gethostname()
    locks = sorted(prefix.parent.glob(f"{prefix.name}_*.lockfile"))
    if locks:
        owner_host, _, owner_pid = (owner_file.read_text().strip() if owner_file.is_file() else "").partition(" ")
        pid = int(owner_pid) if owner_pid.isdigit() else None
        if pid is not None and pid != os.getpid() and owner_host == host and pid_alive(pid):
            raise ExpkitError(
                f"run pid {pid} is writing the image cache {locks[0]}",
                key="dataset.cache",
                hint="wait for that run to finish, or give this one another cache folder",
            )
        for stale in [*locks, *prefix.parent.glob(f"{prefix.name}_*.tempstate*")]:
            stale.unlink(missing_ok=True)
        print(f"removed the stale lock of an interrupted run's image cache: {locks[0]}", file=sys.stderr)
    owner_file.write_text(f"{host} {os.getpid()}\n")


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
