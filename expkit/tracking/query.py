"""Store queries: the resolved store, its experiments and runs, a run by id or id prefix, MLflow errors as ExpkitErrors.

Everything here reads the same store `expkit train` writes to (see `expkit.tracking.store.tracking_uri`).
MLflow is imported inside the functions so that `expkit --help` stays fast.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from expkit.errors import ExpkitError, suggestion
from expkit.tracking.store import tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Experiment, Run

#: Shortest run id prefix accepted on the command line.
MIN_PREFIX = 6
PAGE = 1000
PARENT_TAG = "mlflow.parentRunId"
LIST_HINT = "see `expkit runs list` for the ids in this store"


def resolve_uri(uri: str | None) -> str:
    """--uri, else $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db."""
    return uri or tracking_uri(None, os.getcwd())


def local_store_path(uri: str) -> Path | None:
    """The file (SQLite) or folder (file store) behind a local URI; None for a server or other database."""
    if uri.startswith("sqlite:"):
        from sqlalchemy.engine import make_url

        database = make_url(uri).database
        return Path(database).expanduser().resolve() if database and database != ":memory:" else None
    if uri.startswith("file:"):
        return Path(urlparse(uri).path).expanduser().resolve()
    if "://" not in uri:
        return Path(uri).expanduser().resolve()
    return None


def check_store(uri: str) -> None:
    """Fail with a clear message (before MLflow creates an empty store) if `uri` points nowhere."""
    path = local_store_path(uri)
    if path is not None:
        if not path.exists():
            raise ExpkitError(
                f"no MLflow store at {path} (tracking URI {uri})",
                hint="run `expkit train` in this folder first, or point to a store with --uri or $MLFLOW_TRACKING_URI",
            )
        return
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https") and parsed.hostname:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname, port), timeout=5).close()
        except OSError as exc:
            raise ExpkitError(
                f"cannot reach the MLflow server {uri}: {exc}", hint="start the server, or use another store with --uri"
            ) from None


@contextlib.contextmanager
def store_errors(uri: str) -> Iterator[None]:
    """Turn MLflow and connection failures into one-line ExpkitErrors."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExpkitError(f"cannot read the MLflow store {uri}: {first}") from None
    except OSError as exc:  # includes requests' ConnectionError
        raise ExpkitError(f"cannot reach the MLflow store {uri}: {exc}") from None


def open_client(uri: str | None) -> tuple[MlflowClient, str]:
    """A client on the resolved store, after checking that the store exists."""
    resolved = resolve_uri(uri)
    check_store(resolved)
    import mlflow

    with store_errors(resolved):
        return mlflow.MlflowClient(resolved), resolved


def search_all(client: MlflowClient, experiment_ids: list[str], filter_string: str = "", limit: int | None = None) -> list[Run]:
    """Active runs of these experiments, newest first, every page (or the first `limit`)."""
    runs: list[Run] = []
    token = None
    while True:
        size = PAGE if limit is None else min(PAGE, limit - len(runs))
        page = client.search_runs(
            experiment_ids, filter_string=filter_string, max_results=size, order_by=["attributes.start_time DESC"], page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token or (limit is not None and len(runs) >= limit):
            return runs


def experiments(client: MlflowClient) -> list[Experiment]:
    """All active experiments."""
    found: list[Experiment] = []
    token = None
    while True:
        page = client.search_experiments(max_results=PAGE, page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return found


def find_experiment(client: MlflowClient, uri: str, name: str) -> Experiment:
    """The active experiment `name`, or an error naming the known experiments."""
    exp = client.get_experiment_by_name(name)
    if exp is not None and exp.lifecycle_stage == "active":
        return exp
    names = [e.name for e in experiments(client)]
    hint = suggestion(name, names, "known experiments") if names else "the store has no experiments yet: run `expkit train` first"
    raise ExpkitError(f"no experiment '{name}' in {uri}", hint=hint)


def check_ref(ref: str) -> str:
    """A run id or id prefix as typed, normalized; an error if it cannot be one (checked before opening the store)."""
    ref = ref.strip().lower()
    if not ref.isalnum() or not ref.isascii():
        raise ExpkitError(f"'{ref}' is not a run id", hint=LIST_HINT)
    if len(ref) < MIN_PREFIX:
        raise ExpkitError(f"run id '{ref}' is too short", hint=f"give the full id or its first {MIN_PREFIX}+ characters; {LIST_HINT}")
    return ref


def find_run(client: MlflowClient, uri: str, ref: str) -> Run:
    """The run with id `ref`, or the one run whose id starts with `ref` (at least MIN_PREFIX characters)."""
    from mlflow.exceptions import MlflowException

    ref = check_ref(ref)
    if len(ref) == 32:
        try:
            return client.get_run(ref)
        except MlflowException:
            raise ExpkitError(f"no run '{ref}' in {uri}", hint=LIST_HINT) from None
    ids = [e.experiment_id for e in experiments(client)]
    matches = search_all(client, ids, f"attributes.run_id LIKE '{ref}%'") if ids else []
    if not matches:
        raise ExpkitError(f"no run '{ref}' in {uri}", hint=LIST_HINT)
    if len(matches) > 1:
        shown = ", ".join(r.info.run_id for r in matches[:5])
        raise ExpkitError(f"run id prefix '{ref}' is ambiguous: it matches {len(matches)} runs ({shown})", hint="give more characters")
    return matches[0]
