"""Migration 0012 (preferences): every subscriber already on the list stays on every topic,
weekly; every issue made before is for everyone and every delivery gets the whole issue; on
SQLite and PostgreSQL. Downgrading keeps the subscribers and deliveries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine

from digest.db import _alembic_config, current_revision, make_engine, upgrade

from .helpers.db import postgres_schema, rows


def _fill_0009(engine: Engine) -> None:
    with engine.begin() as c:
        c.execute(sa.text(
            "INSERT INTO subscriber (id, uid, email, email_key, name, status, status_source, "
            "created_at, status_changed_at, confirmed_at, bounce_score) VALUES "
            "(1, 'u1', 'ana@example.org', 'ana@example.org', 'Ana', 'active', 'web', "
            "'2026-01-01 10:00:00', '2026-01-01 10:00:00', '2026-01-01 10:00:00', 0),"
            "(2, 'u2', 'bo@example.org', 'bo@example.org', '', 'pending', 'web', "
            "'2026-01-02 10:00:00', '2026-01-02 10:00:00', NULL, 0)"
        ))  # fmt: skip
        c.execute(sa.text(
            "INSERT INTO issue (id, number, uid, status, subject, period_start, period_end, "
            "created_at, html, text) VALUES (1, 1, 'i1', 'sent', 'Issue one', "
            "'2026-01-01 00:00:00', '2026-01-08 00:00:00', '2026-01-08 00:00:00', '<p>x</p>', 'x')"
        ))  # fmt: skip
        c.execute(sa.text(
            "INSERT INTO delivery (issue_id, subscriber_id, status, attempts, last_reply) "
            "VALUES (1, 1, 'sent', 1, '250 ok')"
        ))  # fmt: skip


def _check(engine: Engine) -> None:
    assert current_revision(engine) == "0012"
    assert rows(engine, "SELECT email, status, frequency FROM subscriber ORDER BY id") == [
        ("ana@example.org", "active", "weekly"),
        ("bo@example.org", "pending", "weekly"),
    ]
    assert rows(engine, "SELECT count(*) FROM subscriber_topic") == [(0,)]  # every topic
    assert rows(engine, "SELECT number, frequency, note_markdown, featured_url FROM issue") == [
        (1, None, "", None)  # for everyone, no note, nothing featured
    ]
    assert rows(engine, "SELECT subscriber_id, status, variant_id FROM delivery") == [
        (1, "sent", None)  # the whole issue
    ]


def _round_trip(engine: Engine) -> None:
    upgrade(engine, "0009")
    _fill_0009(engine)
    upgrade(engine)
    _check(engine)
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        with conn.begin():
            command.downgrade(_alembic_config(conn), "0009")
    assert current_revision(engine) == "0009"
    assert rows(engine, "SELECT email FROM subscriber ORDER BY id") == [
        ("ana@example.org",), ("bo@example.org",)
    ]  # fmt: skip
    assert rows(engine, "SELECT subscriber_id, status FROM delivery") == [(1, "sent")]
    upgrade(engine)
    _check(engine)


def test_sqlite_existing_subscribers_keep_every_topic_weekly(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        _round_trip(engine)
    finally:
        engine.dispose()


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    with postgres_schema() as url:
        engine = make_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


@pytest.mark.postgres
def test_postgres_existing_subscribers_keep_every_topic_weekly(pg_engine: Engine) -> None:
    _round_trip(pg_engine)
