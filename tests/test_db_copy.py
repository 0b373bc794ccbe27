"""`digest db copy`: a whole database — consent log and deliveries included — moves into an
empty one, SQLite to PostgreSQL (and to another SQLite file), and the copy works on: new rows
get new ids, the next issue goes out from it. Real SQLite, real PostgreSQL, the aiosmtpd server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from digest.db import make_engine

from .helpers.db import postgres_schema
from .helpers.smtp import SmtpServer

TABLES = ("subscriber", "subscriber_event", "news_item", "issue", "issue_item", "delivery")


def _counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as c:
            count = "SELECT count(*) FROM {}"  # the table names are the constants above
            return {t: int(c.execute(sa.text(count.format(t))).scalar_one()) for t in TABLES}
    finally:
        engine.dispose()


@pytest.fixture(params=["postgres", "sqlite"])
def target(request: pytest.FixtureRequest, workdir: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{workdir / 'copy.db'}"
        return
    with postgres_schema() as url:
        yield url


def test_a_whole_database_moves_and_works_on(
    env: dict[str, str], cli: Callable[..., Any], smtp_server: SmtpServer, target: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    for n in range(3):
        assert cli("subscribers", "add", f"reader{n}@example.net").exit_code == 0
    assert cli("subscribers", "unsubscribe", "reader2@example.net").exit_code == 0
    assert cli("news", "add", "--title", "One", "--url", "https://example.org/1").exit_code == 0
    assert cli("send", "--yes").exit_code == 0
    before = _counts(env["DIGEST_DATABASE_URL"])
    assert before["delivery"] == 2 and before["subscriber_event"] >= 4

    r = cli("db", "copy", env["DIGEST_DATABASE_URL"], target)
    assert r.exit_code == 0, r.output
    assert "Copied " in r.stdout and "delivery: 2 rows" in r.stdout
    assert _counts(target) == before
    # the consent log came along, unsubscribe included
    engine = make_engine(target)
    with engine.connect() as c:
        status = c.execute(
            sa.text("SELECT status FROM subscriber WHERE email = 'reader2@example.net'")
        ).scalar_one()
    engine.dispose()
    assert status == "unsubscribed"

    # the copy works on: new rows get fresh ids, and the next issue goes out from it
    monkeypatch.setenv("DIGEST_DATABASE_URL", target)
    assert cli("subscribers", "add", "reader3@example.net").exit_code == 0
    assert cli("news", "add", "--title", "Two", "--url", "https://example.org/2").exit_code == 0
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    assert "Issue 2:" in r.stdout
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages[2:]) == [
        "reader0@example.net", "reader1@example.net", "reader3@example.net",
    ]  # fmt: skip

    # a second copy into the same (now non-empty) database is refused, and changes nothing
    after = _counts(target)
    r = cli("db", "copy", env["DIGEST_DATABASE_URL"], target)
    assert r.exit_code == 1
    assert "already holds rows" in r.stderr and "Traceback" not in r.output
    assert _counts(target) == after


def test_copy_refuses_the_same_database_and_a_missing_source(
    env: dict[str, str], cli: Callable[..., Any], workdir: Path
) -> None:
    r = cli("db", "copy", env["DIGEST_DATABASE_URL"], env["DIGEST_DATABASE_URL"])
    assert r.exit_code == 2 and "the same database" in r.stderr
    r = cli("db", "copy", str(workdir / "nothing-here.db"), f"sqlite:///{workdir / 'x.db'}")
    assert r.exit_code != 0 and "no database at" in r.stderr
    assert "Traceback" not in r.output
