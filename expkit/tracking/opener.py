"""Create a job's MLflow run in a process of its own, while the job's process imports TensorFlow.

    python -m expkit.tracking.opener < request.json

Both imports are Python-bound, so two threads would take turns on the GIL; two processes use both
cores. The request (see `TrackedRun.start`) comes on stdin; the last stdout line is JSON: the new
run's id, or the ExpkitError that stopped it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from expkit.errors import ExpkitError


def main() -> int:
    try:
        request = json.loads(sys.stdin.read())
    except ValueError:  # the job was stopped (Ctrl-C) before it sent the whole request: there is nothing to create
        return 1
    sys.argv[0] = request["source"]  # MLflow's source name and git tags describe the job's program
    from expkit.tracking.run import TrackedRun

    tracked = TrackedRun(
        uri=request["uri"], root_dir=request["root_dir"], experiment_name=request["experiment_name"], artifact_dir=request["artifact_dir"]
    )
    try:
        tracked.create(request["run_name"], request["tags"])
        base = request["tensorboard_base"]
        tracked.record_start(request["run_name"], request["params"], None if base is None else Path(base))
    except ExpkitError as error:
        print(json.dumps({"error": error.message, "key": error.key, "hint": error.hint}), flush=True)
        if tracked.run_id:
            tracked.end("FAILED")
        return 2
    print(json.dumps({"run_id": tracked.run_id}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
