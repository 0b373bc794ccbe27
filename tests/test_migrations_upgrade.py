"""The schema is versioned with Alembic (migrations/): upgrades keep every subscriber and
delivery, on SQLite and PostgreSQL, and the models match the migrations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from digest.db import current_revision, head_revision, make_engine, upgrade
from digest.models import SQLModel

from .helpers.db import PG_URL


def _fill_first_schema(engine: Engine) -> None:
    """Rows as the first schema version (0001) stored them."""
    with engine.begin() as c:
        c.execute(sa.text(
            "INSERT INTO subscriber (id, uid, email, email_key, name, status, status_source, "
            "created_at, status_changed_at, confirmed_at) VALUES "
            "(1, 'u1', 'Ana@Example.org', 'ana@example.org', 'Ana', 'active', 'import', "
            "'2026-01-01 10:00:00', '2026-01-01 10:00:00', '2026-01-01 10:00:00'),"
            "(2, 'u2', 'bo@example.org', 'bo@example.org', '', 'unsubscribed', 'cli', "
            "'2026-01-02 10:00:00', '2026-02-01 10:00:00', NULL)"
        ))  # fmt: skip
        c.execute(sa.text(
            "INSERT INTO issue (id, number, uid, status, subject, period_start, period_end, "
            "created_at, html, text) VALUES (1, 1, 'i1', 'sent', 'Issue one', "
            "'2026-01-01 00:00:00', '2026-01-08 00:00:00', '2026-01-08 00:00:00', '<p>x</p>', 'x')"
        ))  # fmt: skip
        c.execute(sa.text(
            "INSERT INTO delivery (issue_id, subscriber_id, status, attempts, last_reply) VALUES "
            "(1, 1, 'sent', 1, '250 ok'), (1, 2, 'failed', 1, '550 no such user')"
        ))  # fmt: skip


def _check_upgraded(engine: Engine) -> None:
    assert current_revision(engine) == head_revision()
    with engine.connect() as c:
        subs = c.execute(sa.text("SELECT email, status FROM subscriber ORDER BY id")).all()
        assert [tuple(r) for r in subs] == [
            ("Ana@Example.org", "active"),
            ("bo@example.org", "unsubscribed"),
        ]
        deliveries = c.execute(
            sa.text("SELECT subscriber_id, status, last_reply FROM delivery ORDER BY subscriber_id")
        ).all()
        assert [tuple(r) for r in deliveries] == [
            (1, "sent", "250 ok"),
            (2, "failed", "550 no such user"),
        ]
        events = c.execute(
            sa.text(
                "SELECT subscriber_id, status, source FROM subscriber_event ORDER BY subscriber_id"
            )
        ).all()
        # 0002 backfills the consent log from what the first schema knew
        assert [tuple(r) for r in events] == [(1, "active", "import"), (2, "unsubscribed", "cli")]


def _schema_diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, SQLModel.metadata))


def test_sqlite_upgrade_from_first_version_keeps_data(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0001")
    assert current_revision(engine) == "0001"
    _fill_first_schema(engine)
    before, after = upgrade(engine)
    assert (before, after) == ("0001", head_revision())
    _check_upgraded(engine)
    # and upgrading again is a no-op
    assert upgrade(engine) == (head_revision(), head_revision())
    _check_upgraded(engine)


def test_sqlite_models_match_migrations(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    upgrade(engine)
    assert _schema_diff(engine) == []


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    if not PG_URL:
        pytest.skip("set DIGEST_TEST_POSTGRES_URL to run the PostgreSQL tests")
    engine = make_engine(PG_URL)
    with engine.begin() as c:
        c.exec_driver_sql("DROP SCHEMA IF EXISTS digest_migrations CASCADE")
        c.exec_driver_sql("CREATE SCHEMA digest_migrations")
    engine.dispose()
    engine = make_engine(PG_URL, connect_args={"options": "-csearch_path=digest_migrations"})
    try:
        yield engine
    finally:
        engine.dispose()
        cleanup = make_engine(PG_URL)
        with cleanup.begin() as c:
            c.exec_driver_sql("DROP SCHEMA IF EXISTS digest_migrations CASCADE")
        cleanup.dispose()


@pytest.mark.postgres
def test_postgres_upgrade_from_first_version_keeps_data(pg_engine: Engine) -> None:
    upgrade(pg_engine, "0001")
    _fill_first_schema(pg_engine)
    upgrade(pg_engine)
    _check_upgraded(pg_engine)
    assert _schema_diff(pg_engine) == []


def test_head_revision_read_from_files_agrees_with_alembic() -> None:
    from digest.db import alembic_head_revision

    assert head_revision() == alembic_head_revision()
