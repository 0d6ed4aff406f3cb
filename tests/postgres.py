"""A fresh PostgreSQL database per test, on the cluster `.ci/postgres.sh` starts ($EXPKIT_TEST_POSTGRES). Plain functions.

Locally the PostgreSQL tests skip when no cluster is given; under CI=true (as `.ci/run` sets it) that is an error.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import IN_CI

ENV = "EXPKIT_TEST_POSTGRES"


def base_uri() -> str:
    uri = os.environ.get(ENV, "")
    if not uri:
        message = f'no PostgreSQL cluster: start one with `eval "$(bash .ci/postgres.sh start DIR)"` (sets ${ENV})'
        if IN_CI:
            pytest.fail(message + "; .ci/run does this, so under CI=true a missing cluster is an error")
        pytest.skip(message)
    return uri


def new_database(prefix: str = "expkit") -> str:
    """CREATE DATABASE <prefix>_<random> on the test cluster; returns its SQLAlchemy URI (postgresql://...)."""
    import psycopg

    base = base_uri()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(base)._replace(path=f"/{name}"))


def store_uri(kind: str, folder: os.PathLike[str], name: str = "mlflow") -> str:
    """A new, empty store of `kind` ("sqlite" or "postgresql")."""
    return f"sqlite:///{os.fspath(folder)}/{name}.db" if kind == "sqlite" else new_database(name)
