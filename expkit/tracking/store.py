"""Where runs are stored: the tracking URI and the experiment, created safely once."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from expkit.errors import ExpkitError


class ParentRunUnavailable(ExpkitError):
    """A sweep job's parent run could not be created: the launching process reports why, once, for the whole sweep."""


def publish_parent(path: Path, run_id: str | None, error: ExpkitError | None = None) -> None:
    """Write the sweep's parent run id, or the error that stopped its creation, where `await_parent` reads it."""
    reply = {"run_id": run_id} if error is None else {"error": error.message, "key": error.key, "hint": error.hint}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(reply))
    partial.replace(path)  # atomic: a reader sees nothing or the whole reply


def await_parent(path: Path, timeout_s: float = 600.0) -> str:
    """The parent run id `publish_parent` wrote to `path`, waiting for it; ParentRunUnavailable if it could not be created."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise ExpkitError(f"the sweep's parent run was not created within {timeout_s:.0f} s ({path} never appeared)")
        time.sleep(0.02)
    reply = json.loads(path.read_text())
    if "error" in reply:
        raise ParentRunUnavailable(reply["error"], key=reply.get("key"), hint=reply.get("hint"))
    return str(reply["run_id"])


def tracking_uri(uri: str | None, root_dir: str) -> str:
    """tracking.uri, else $MLFLOW_TRACKING_URI, else sqlite:///<root_dir>/mlflow.db."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(root_dir).resolve() / 'mlflow.db'}"


def is_local_store(uri: str) -> bool:
    return uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock beside a SQLite store, so concurrent processes never race to create its schema."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock; create the store once before starting parallel jobs
        yield
        return
    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


#: How the MLflow UI files an experiment: expkit's are model training ("Machine learning" in the UI's kind selector).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
#: MLflow 3.17's UI takes its mode (GenAI or model training) from this URL parameter, else from the browser's last choice
#: (GenAI at first), not from the experiment's kind: expkit's links carry it so that they open the training view.
TRAINING_VIEW_QUERY = "workflowType=machine_learning"


def ensure_experiment(uri: str, name: str, artifact_dir: str) -> str:
    """The id of experiment `name`, created (with its artifact folder) if new. Also creates a fresh store's schema."""
    with store_lock(uri):
        return _ensure_experiment(uri, name, artifact_dir)


def _ensure_experiment(uri: str, name: str, artifact_dir: str) -> str:
    import mlflow
    from mlflow.exceptions import MlflowException

    from expkit.tracking.new_store import seed_new_store

    seed_new_store(uri)
    mlflow.set_tracking_uri(uri)
    try:
        client = mlflow.MlflowClient(uri)
        found = client.get_experiment_by_name(name)
        if found is not None:
            if EXPERIMENT_KIND_TAG not in found.tags:  # made before expkit marked its experiments, or by hand
                with suppress(MlflowException):  # a label for the UI: another process setting it at once is no error
                    client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
            return str(found.experiment_id)
        location = Path(artifact_dir).resolve().as_uri() if is_local_store(uri) else None
        try:
            return str(client.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: TRAINING_KIND}))
        except MlflowException:  # another process created it between our two calls
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)
    except MlflowException as exc:
        raise ExpkitError(f"cannot use the MLflow store {uri}: {str(exc).splitlines()[0]}", key="tracking.uri") from None
    except OSError as exc:  # connection refused and friends, for a server URI
        raise ExpkitError(
            f"cannot reach the MLflow store {uri}: {exc}", key="tracking.uri", hint="start the server, or unset tracking.uri"
        ) from None
    except Exception as exc:  # the store's database driver: e.g. a file that is not an SQLite database
        raise ExpkitError(
            f"cannot open the MLflow store {uri}: {str(exc).splitlines()[0]}",
            key="tracking.uri",
            hint="point tracking.uri at an MLflow store (a new sqlite:/// file is created on first use)",
        ) from None


#: The experiment tag holding expkit's runs-table view (MLflow UI's shared view state), opened with ?viewStateShareKey=expkit.
TABLE_VIEW_KEY = "expkit"
TABLE_VIEW_TAG = f"mlflow.sharedViewState.{TABLE_VIEW_KEY}"
DEFAULT_COLUMNS = ["attributes.`Dataset`", "attributes.`Models`"]
RUN_NAME_COLUMN = "attributes.`Run Name`"
#: Metric columns shown first, in this order: a sweep parent's best objective beside its children's objectives.
LEADING_METRICS = ["metrics.`best/objective`", "metrics.`objective`"]
#: Column widths in px. The UI's 190 px name column cuts a sweep child's name after ~15 characters; the dataset and
#: model columns (300 and 200 px) would push every metric column out of a 1,600 px window.
COLUMN_WIDTHS = {RUN_NAME_COLUMN: 280, "attributes.`Dataset`": 160, "attributes.`Models`": 110}


def table_view(current: str | None, metrics: list[str], params: list[str]) -> str:
    """The view state JSON with these metric and param columns added to the columns already shown.

    Columns are laid out name, metrics (the objectives first), params, then the run's date, dataset, duration and
    models (`columnOrder`; the UI applies `columnWidths` only together with an order)."""
    import json

    try:
        state = json.loads(current) if current else {}
    except ValueError:
        state = {}
    columns = list(state.get("selectedColumns") or DEFAULT_COLUMNS)
    for column in [*(f"metrics.`{m}`" for m in metrics), *(f"params.`{p}`" for p in params)]:
        if column not in columns:
            columns.append(column)

    def place(column: str) -> tuple[int, int]:
        if column in LEADING_METRICS:
            return 0, LEADING_METRICS.index(column)
        return (1 if column.startswith("metrics.") else 2 if column.startswith("params.") else 3), 0

    columns.sort(key=place)  # stable: columns of one kind keep the order they were added in
    shown = [c for c in columns if not c.startswith("attributes.")]
    order = [RUN_NAME_COLUMN, *shown, "runDateAndNestInfo", "attributes.`Dataset`", "duration", "attributes.`Models`"]
    return json.dumps({**state, "selectedColumns": columns, "columnOrder": order, "columnWidths": COLUMN_WIDTHS})
