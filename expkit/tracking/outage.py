"""A tracking server that goes away while a job trains: the job keeps training, and nothing it measured is lost.

- Each epoch's record goes to the run's `Outbox`. While the server answers, it is delivered at once (from the epoch
  logger's thread, off the training loop). While it does not, records are kept, in order, and delivered together, with
  their original timestamps, as soon as it answers again. MLflow's store drops an exact copy of a metric it already has
  (same key, step, timestamp and value), so delivering a record twice cannot duplicate a step.
- When training ends, `settle` waits up to `tracking.server_wait_s` for the server, delivers the kept records, and the
  job logs its results to the same run as usual: the run ends FINISHED.
- If the server is still gone, `settle` writes the kept records to `<run folder>/undelivered_metrics.jsonl` and raises
  `StoreUnreachable`: the job exits with EXIT_STORE_UNREACHABLE (75). Checkpoint, state and metrics stay in the run
  folder; `expkit resume DIR` later delivers the kept records, backfills any epoch
  still missing, evaluates and logs the results to the same run.

A local store (SQLite) is not a server: its errors are raised as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from expkit.experiment.recorder import RecorderUnreachable

#: The job's exit code when training finished but the tracking server stayed unreachable (BSD's EX_TEMPFAIL).
EXIT_STORE_UNREACHABLE = 75
UNDELIVERED = "undelivered_metrics.jsonl"
_LOCK = threading.Lock()
_BOXES: dict[str, Outbox] = {}


#: MLflow's HTTP retry budget for the outbox's calls: one quick retry, not MLflow's default of 7 with backoff (minutes),
#: so a server that dies while a record is on its way costs seconds, and the record waits in the outbox instead.
QUICK_REQUESTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


@contextlib.contextmanager
def quick_requests() -> Iterator[None]:
    """MLflow's requests made inside give up after seconds. (MLflow reads these variables at each request; while a job
    trains, the outbox's thread is the only one talking to the server.)"""
    saved = {name: os.environ.get(name) for name in QUICK_REQUESTS}
    os.environ.update(QUICK_REQUESTS)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class StoreUnreachable(RecorderUnreachable):
    """Training is done, the tracking server is not back: the results stay on disk for `expkit resume`."""

    exit_code = EXIT_STORE_UNREACHABLE


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def reachable(uri: str, timeout: float = 3.0) -> bool:
    """Whether the tracking server answers GET /health (never behind authentication)."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def unreachable_error(error: BaseException) -> bool:
    """An error that says the server could not be reached (rather than that it refused the request)."""
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    text = str(error)
    markers = ("Max retries exceeded", "Connection refused", "ConnectionError", "Connection aborted", "Read timed out", "503")
    return any(marker in text for marker in markers)


def run_uri(run: Any) -> str:
    """The tracking URI of a TrackedRun (`uri`) or a ChildRun (its client's)."""
    uri = getattr(run, "uri", "")
    if not uri:
        tracking = getattr(run.client, "_tracking_client", None)
        uri = getattr(tracking, "tracking_uri", "")
    return str(uri)


class Outbox:
    """One run's epoch records not yet in the store, in the order they were made."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.uri = run_uri(run)
        self.pending: list[Any] = []  # mlflow.entities.Metric
        self.down_since: float | None = None
        self._lock = threading.RLock()

    def open(self) -> None:
        """Open the run's store now, unless it is a server that does not answer (the first delivery opens it then)."""
        if is_server(self.uri) and not reachable(self.uri):
            self._down()
            return
        self._unless_unreachable(lambda: self.run.client)

    def warm_up(self) -> None:
        """The run's warm-up (imports, store), skipped while its server does not answer: what it saves is time only."""
        if is_server(self.uri) and not reachable(self.uri):
            return
        self._unless_unreachable(self.run.warm_up)

    def _unless_unreachable(self, action: Any) -> None:
        try:
            with quick_requests():
                action()
        except Exception as error:
            if not (is_server(self.uri) and unreachable_error(error)):
                raise
            self._down()

    def send(self, metrics: list[Any]) -> bool:
        """Queue these metrics and try to deliver everything queued; False while the server is unreachable."""
        with self._lock:
            self.pending.extend(metrics)
        return self.deliver()

    def deliver(self) -> bool:
        """Deliver the queued records (all, or none of them are taken off the queue); False if the server is unreachable."""
        with self._lock:
            if not self.pending:
                return True
            server = is_server(self.uri)
            if server and not reachable(self.uri):
                self._down()
                return False
            batch = list(self.pending)
            try:
                with quick_requests():
                    for i in range(0, len(batch), 1000):
                        self.run.client.log_batch(self.run.run_id, metrics=batch[i : i + 1000])
            except Exception as error:
                if not (server and unreachable_error(error)):
                    raise
                self._down()
                return False
            del self.pending[: len(batch)]
            if self.down_since is not None:
                steps = sorted({m.step + 1 for m in batch})
                print(f"tracking server {self.uri} is back: delivered epoch(s) {', '.join(map(str, steps))}", file=sys.stderr, flush=True)
                self.down_since = None
            return True

    def _down(self) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            print(
                f"tracking server {self.uri} is unreachable: training goes on; each epoch's metrics are kept and sent when it is back",
                file=sys.stderr,
                flush=True,
            )

    def save(self, folder: Path) -> Path | None:
        """Append the records not delivered to folder/undelivered_metrics.jsonl (one JSON object per metric)."""
        with self._lock:
            if not self.pending:
                return None
            path = folder / UNDELIVERED
            with path.open("a") as out:
                for m in self.pending:
                    out.write(json.dumps({"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step}) + "\n")
            self.pending.clear()
            return path


def outbox(run: Any) -> Outbox:
    """The run's outbox (one per run id in this process)."""
    with _LOCK:
        box = _BOXES.get(run.run_id)
        if box is None:
            box = _BOXES[run.run_id] = Outbox(run)
        return box


def settle(run: Any, wait_s: float, output_dir: Path) -> None:
    """Training is done: wait up to `wait_s` for the server, then deliver the kept records; else keep them on disk and raise."""
    box = outbox(run)
    if not is_server(box.uri):
        box.deliver()
        return
    deadline = time.monotonic() + wait_s
    announced = False
    while True:
        if reachable(box.uri) and box.deliver():
            return
        if time.monotonic() >= deadline:
            box.save(output_dir)
            leave_open()
            raise StoreUnreachable(
                f"training finished, but the tracking server {box.uri} has not answered for {wait_s:.0f} s: "
                f"the run's checkpoint, state and metrics are kept in {output_dir}"
            )
        if not announced:
            print(f"training finished; waiting up to {wait_s:.0f} s for the tracking server {box.uri}", file=sys.stderr, flush=True)
            announced = True
        time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))


def leave_open() -> None:
    """Forget MLflow's active run in this process without ending it: its exit handler would try to reach the gone server."""
    from mlflow.environment_variables import MLFLOW_RUN_ID
    from mlflow.tracking.fluent import _active_run_stack

    _active_run_stack.get().clear()
    MLFLOW_RUN_ID.unset()


def deliver_saved(run: Any, output_dir: Path) -> int:
    """On resume: send the records an earlier attempt kept on disk (their own timestamps: a copy already there is dropped)."""
    from mlflow.entities import Metric

    path = output_dir / UNDELIVERED
    if not path.is_file():
        return 0
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    box = outbox(run)
    box.pending.extend(Metric(r["key"], float(r["value"]), int(r["timestamp"]), int(r["step"])) for r in records)
    if not box.deliver():
        box.pending.clear()  # still on disk, for the next attempt
        from expkit.errors import ExpkitError

        raise ExpkitError(
            f"the tracking server {box.uri} is unreachable: nothing was delivered",
            key="tracking.uri",
            hint="start the server (on the same store), then run expkit resume again",
        )
    path.rename(path.with_name(UNDELIVERED + ".delivered"))
    return len(records)
