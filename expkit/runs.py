"""CLI read paths over recorded runs: list, compare, best, and the UI. (Being implemented.)"""

from __future__ import annotations

from expkit.errors import ExpkitError


def list_runs(*, experiment: str | None, uri: str | None, limit: int) -> None:
    raise ExpkitError("not implemented yet")


def compare_runs(*, run_ids: list[str], sweep: str | None, metric: str | None, mode: str, uri: str | None) -> None:
    raise ExpkitError("not implemented yet")


def best_run(*, experiment: str, metric: str, mode: str, uri: str | None) -> None:
    raise ExpkitError("not implemented yet")


def serve_ui(*, host: str, port: int, uri: str | None) -> None:
    raise ExpkitError("not implemented yet")
