"""Concurrent writers against one `expkit server`, on SQLite and on PostgreSQL: nothing lost, nothing twice, every
metric history complete. A small version of benchmarks/server_load.py (8 writers x 25 runs there, with the throughput)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tests import postgres

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "server_load.py"


def load_benchmark():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("server_load", BENCHMARK)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["server_load"] = module  # its writer function is pickled by name for the writer processes
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_eight_concurrent_writers_lose_and_duplicate_nothing(store: str) -> None:
    if store == "postgresql":
        postgres.base_uri()  # skip locally (fail under CI=true) without a cluster
    figures = load_benchmark().one_store(store, writers=8, runs=3, steps=3, workers=1)
    assert figures["runs_found"] == 24 and figures["writer_errors"] == 0, figures
    assert (figures["lost"], figures["duplicated"], figures["not_finished"], figures["incomplete_metric_histories"]) == (0, 0, 0, 0)
