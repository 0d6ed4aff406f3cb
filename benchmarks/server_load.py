"""Many sweep jobs writing to one `expkit server` at once: 8 writer processes x 25 short runs each, on PostgreSQL and on SQLite.

    eval "$(bash .ci/postgres.sh start /tmp/pg)"      # a PostgreSQL cluster on 127.0.0.1 (sets EXPKIT_TEST_POSTGRES)
    python benchmarks/server_load.py                   # writes benchmarks/results/server_load.json
    python benchmarks/server_load.py --stores sqlite --writers 4 --runs 5

Each writer is a process on 127.0.0.1 standing in for a sweep job on another machine: through the server's REST API
(MLflow's client, its retries as shipped) it creates a run, logs 4 params, `--steps` steps of 3 metrics (one batch per
step, as an epoch does) and ends the run. Then every run is read back: lost runs (missing), duplicated runs (a
(writer, index) pair twice) and incomplete metric histories (a step missing or twice) are counted; any of them makes
the script exit 1. Runs per minute is the writers' wall time from the first start to the last end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO)]

from record import save_result  # noqa: E402  (benchmarks/record.py)

METRICS = ("loss", "val_loss", "val_accuracy")


def writer(url: str, experiment_id: str, index: int, runs: int, steps: int, barrier_at: float) -> dict[str, Any]:
    """One writer process: `runs` short runs, one after another. Returns its timing."""
    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    client = mlflow.MlflowClient(url)
    while time.time() < barrier_at:  # all writers start together
        time.sleep(0.01)
    started = time.time()
    errors = 0
    for r in range(runs):
        try:
            run = client.create_run(experiment_id, run_name=f"w{index}-r{r}", tags={"writer": str(index), "index": str(r)})
            run_id = run.info.run_id
            params = [Param("writer", str(index)), Param("index", str(r)), Param("lr", str(0.001 * (r + 1))), Param("seed", "0")]
            client.log_batch(run_id, params=params, tags=[RunTag("load", "1")])
            for step in range(steps):
                now = int(time.time() * 1000)
                client.log_batch(run_id, metrics=[Metric(k, 1.0 / (step + 1) + i, now, step) for i, k in enumerate(METRICS)])
            client.set_terminated(run_id, "FINISHED")
        except Exception as exc:  # counted, then found missing or incomplete by the check
            errors += 1
            print(f"writer {index} run {r}: {exc}", file=sys.stderr)
    return {"writer": index, "seconds": time.time() - started, "started": started, "ended": time.time(), "errors": errors}


def start_server(backend: str, root: Path, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    from tests import mlflow_server as ms

    port = ms.free_port()
    command = [sys.executable, "-m", "expkit.cli", "server", "--root", str(root), "--port", str(port), "--backend-store-uri", backend]
    command += ["--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = ms.start_process(command, url=f"http://127.0.0.1:{port}", log=root / "server.log", cwd=root, env=env)
    ms.wait_healthy(server, timeout=240)
    return server.process, server.url


def check(url: str, experiment_id: str, writers: int, runs: int, steps: int) -> dict[str, int]:
    """Read every run back: lost, duplicated, unfinished runs and incomplete metric histories."""
    import mlflow

    client = mlflow.MlflowClient(url)
    found, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        found += list(page)
        token = page.token
        if not token:
            break
    seen = Counter((r.data.tags.get("writer"), r.data.tags.get("index")) for r in found)
    expected = {(str(w), str(r)) for w in range(writers) for r in range(runs)}
    incomplete = 0
    for run in found:
        for key in METRICS:
            history = Counter(m.step for m in client.get_metric_history(run.info.run_id, key))
            if sorted(history) != list(range(steps)) or any(n != 1 for n in history.values()):
                incomplete += 1
    return {
        "runs_found": len(found),
        "lost": len(expected - set(seen)),
        "duplicated": sum(n - 1 for n in seen.values() if n > 1),
        "not_finished": sum(1 for r in found if r.info.status != "FINISHED"),
        "incomplete_metric_histories": incomplete,
    }


def postgres_database() -> str:
    base = os.environ.get("EXPKIT_TEST_POSTGRES", "")
    if not base:
        raise SystemExit('no PostgreSQL: eval "$(bash .ci/postgres.sh start DIR)" first (sets EXPKIT_TEST_POSTGRES)')
    import psycopg

    name = f"load_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return base.rsplit("/", 1)[0] + f"/{name}"


def one_store(kind: str, writers: int, runs: int, steps: int, workers: int) -> dict[str, Any]:
    import mlflow

    with tempfile.TemporaryDirectory(prefix=f"load-{kind}-") as folder:
        root = Path(folder)
        backend = f"sqlite:///{root / 'mlflow.db'}" if kind == "sqlite" else postgres_database()
        process, url = start_server(backend, root, workers)
        try:
            experiment_id = mlflow.MlflowClient(url).create_experiment("load")
            barrier = time.time() + 8  # the writers import MLflow, then start together
            with ProcessPoolExecutor(writers) as pool:
                futures = [pool.submit(writer, url, experiment_id, w, runs, steps, barrier) for w in range(writers)]
                timings = [f.result() for f in futures]
            wall = max(t["ended"] for t in timings) - min(t["started"] for t in timings)
            figures = check(url, experiment_id, writers, runs, steps)
        finally:
            process.terminate()
            process.wait(30)
    return {
        "store": kind,
        "writers": writers,
        "runs_per_writer": runs,
        "steps_per_run": steps,
        "server_workers": workers,
        "wall_s": round(wall, 1),
        "runs_per_minute": round(writers * runs / wall * 60, 1),
        "writer_errors": sum(t["errors"] for t in timings),
        **figures,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="postgresql,sqlite")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--note", default="", help="what the machine was doing meanwhile")
    args = parser.parse_args()
    results = [one_store(kind, args.writers, args.runs, args.steps, args.workers) for kind in args.stores.split(",")]
    save_result("server_load", {"results": results, "note": args.note})
    bad = [r for r in results if r["lost"] or r["duplicated"] or r["not_finished"] or r["incomplete_metric_histories"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
