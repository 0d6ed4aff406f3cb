"""Create a job's MLflow run in a process of its own, while the job's process imports TensorFlow.

    python -m expkit.tracking.opener < request.json

Both imports are Python-bound, so two threads would take turns on the GIL; two processes use both
cores. The request (see `TrackedRun.start`) comes on stdin; the last stdout line is JSON: the new
run's id, or the ExpkitError that stopped it.

It is off by default (`wanted`): the opener saves wall time only by using an idle core during
TensorFlow's import, and costs a second MLflow import and SQL-store set-up, which the job's own
process pays again to log its metrics and models. Measured on mnist_dense (benchmarks/CHANGES.md,
twelfth pass): 2.6-3.0 s of CPU for the opener, for at most the ~1.5 s the store set-up takes
in the job's process.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from expkit.errors import ExpkitError

#: Set to 1 to have a single run's MLflow run created by this module in a second process while the job imports TensorFlow.
OPENER_ENV = "EXPKIT_RUN_OPENER"


def wanted() -> bool:
    """Whether a job should create its run in a second process (trading ~2.8 s of CPU for ~1.5 s of wall time): only on request.

    The job's own process imports MLflow and opens the store anyway (metrics, models), so a run created there costs
    only the run's creation (~0.2 s of CPU); see the module docstring.
    """
    return os.environ.get(OPENER_ENV, "").strip().lower() in ("1", "true", "yes")


def main() -> int:
    try:
        request = json.loads(sys.stdin.read())
    except ValueError:  # the job was stopped (Ctrl-C) before it sent the whole request: there is nothing to create
        return 1
    sys.argv[0] = request["source"]  # MLflow's source name and git tags describe the job's program
    from expkit.backend import hidden

    with hidden(("pandas",)):  # this process logs no model and no dataset: MLflow would load pandas for nothing (0.3 s)
        import mlflow  # noqa: F401
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
