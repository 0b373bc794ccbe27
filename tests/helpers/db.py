"""The test database: reading rows back, and PostgreSQL (a fresh schema per test) when
DIGEST_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from digest.db import make_engine

PG_URL = os.environ.get("DIGEST_TEST_POSTGRES_URL")


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A database URL whose tables live in a fresh PostgreSQL schema, dropped afterwards."""
    if not PG_URL:
        pytest.skip("set DIGEST_TEST_POSTGRES_URL to run the PostgreSQL tests")
    import secrets

    import sqlalchemy as sa

    schema = f"t_{secrets.token_hex(6)}"
    admin = make_engine(PG_URL)
    with admin.begin() as c:
        c.execute(sa.text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as c:
            c.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


# For a module's `database_url` fixture, to run each of its tests on both databases.
BOTH_DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextmanager
def database_of(kind: str, folder: Path) -> Iterator[str]:
    """A fresh database: "sqlite" (subscribers.db in `folder`) or "postgres" (a schema)."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'subscribers.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture(params=BOTH_DATABASES, name="database_url")
def database_url_on_both(request: pytest.FixtureRequest, workdir: Path) -> Iterator[str]:
    """Imported into a test module, it stands in for conftest's `database_url`: every test of
    that module runs on SQLite and on PostgreSQL (when DIGEST_TEST_POSTGRES_URL is set)."""
    with database_of(request.param, workdir) as url:
        yield url


def rows(where: Engine | Mapping[str, str] | str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """The rows of `sql`, from an engine, a database URL, or the test environment's
    DIGEST_DATABASE_URL."""
    if isinstance(where, Engine):
        with where.connect() as c:
            return [tuple(r) for r in c.execute(sa.text(sql), params)]
    engine = make_engine(where if isinstance(where, str) else where["DIGEST_DATABASE_URL"])
    try:
        return rows(engine, sql, **params)
    finally:
        engine.dispose()


def count(where: Engine | Mapping[str, str], sql: str, **params: Any) -> int:
    """The single number a `SELECT count(*) …` answers."""
    ((n,),) = rows(where, sql, **params)
    return int(n)
