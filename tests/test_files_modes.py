"""Files holding personal data are readable by their owner only (0600), whatever the umask:
the SQLite database and its -wal/-shm files, the send lock and subscriber exports."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from digest.db import make_engine

from .helpers.newsletter import FROM, SECRET
from .helpers.smtp import SmtpServer


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the usual umask: new files are readable by everyone
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def configured(
    workdir: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, open_umask: None
) -> Path:
    for k, v in {
        "DIGEST_SMTP_URL": smtp_server.url, "DIGEST_FROM": FROM, "DIGEST_SECRET_KEY": SECRET,
        "DIGEST_BASE_URL": "https://news.partnership.example.org",
        "DIGEST_POSTAL_ADDRESS": "Civic Centre, Exampletown EX1 2AB",
    }.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    return workdir


def test_database_wal_shm_lock_and_export_are_owner_only(
    cli: Callable[..., Any], configured: Path
) -> None:
    r = cli("init")
    assert r.exit_code == 0, r.output
    db = configured / "subscribers.db"
    assert _mode(db) == 0o600
    assert _mode(configured / "digest.toml") == 0o644  # not personal data: the umask's
    engine = make_engine(f"sqlite:///{db}")
    with engine.connect() as c:  # WAL mode: -wal and -shm exist while a connection is open
        c.execute(sa.text("SELECT count(*) FROM subscriber")).scalar()
        assert _mode(db.with_name("subscribers.db-wal")) == 0o600
        assert _mode(db.with_name("subscribers.db-shm")) == 0o600
    engine.dispose()

    assert cli("subscribers", "add", "ana@example.org", "--name", "Ana").exit_code == 0
    r = cli("news", "add", "--title", "Item", "--url", "https://example.org/n/1",
            "--published", datetime.now(UTC).isoformat())  # fmt: skip
    assert r.exit_code == 0, r.output
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    assert _mode(configured / "subscribers.db.send-lock") == 0o600

    r = cli("subscribers", "export", "list.csv")
    assert r.exit_code == 0, r.output
    assert _mode(configured / "list.csv") == 0o600
    assert "ana@example.org" in (configured / "list.csv").read_text(encoding="utf-8")


def test_init_makes_an_existing_database_owner_only(
    cli: Callable[..., Any], configured: Path
) -> None:
    assert cli("init").exit_code == 0
    db = configured / "subscribers.db"
    os.chmod(db, 0o644)  # as an older digest (or a copy) left it
    lock = configured / "subscribers.db.send-lock"
    lock.write_text("")
    os.chmod(lock, 0o644)
    r = cli("init")
    assert r.exit_code == 0, r.output
    assert _mode(db) == 0o600
    assert cli("subscribers", "add", "ana@example.org").exit_code == 0
    r = cli("news", "add", "--title", "Item", "--url", "https://example.org/n/1",
            "--published", datetime.now(UTC).isoformat())  # fmt: skip
    assert cli("send", "--yes").exit_code == 0
    assert _mode(lock) == 0o600
