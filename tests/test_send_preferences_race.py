"""Preferences changed while an issue is being sent (issues/variants.py): the variant frozen on
each delivery row when the issue was made decides what is sent; the change, made from another
connection in the middle of the send, is recorded and counts from the next issue on; the
issue completes. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from digest.config_load import load_settings
from digest.db import make_engine, session_scope
from digest.preferences import set_preferences_of

from .helpers.db import (
    database_url_on_both,  # noqa: F401 (the database_url fixture: both databases)
    rows,
)
from .helpers.smtp import SmtpServer


def _news(cli, *items: tuple[str, str]) -> None:
    now = datetime.now(UTC)
    for title, category in items:
        r = cli("news", "add", "--title", title, "--url", f"https://example.org/{title.replace(' ', '-')}",
                "--category", category, "--published", (now - timedelta(hours=1)).isoformat())  # fmt: skip
        assert r.exit_code == 0, r.output


def test_the_frozen_delivery_decides(cli, env, engine, smtp_server: SmtpServer) -> None:
    _news(cli, ("Course in May", "Training"), ("Toolkit", "Procedures"))
    readers = [f"reader{n}@example.net" for n in range(6)]
    for email in readers:
        assert cli("subscribers", "add", email, "--topic", "Training").exit_code == 0
    settings = load_settings().settings
    other = make_engine(env["DIGEST_DATABASE_URL"])
    changed: list[str] = []

    def change_everyone(rcpt: str, data: bytes) -> None:
        # the first message is in the SMTP server: everyone switches to Procedures, now
        if not changed:
            with session_scope(other) as session:
                for email in readers:
                    changed.extend(set_preferences_of(session, settings, email,
                                                      topics=["Procedures"], frequency=None)[0])  # fmt: skip
        return None

    smtp_server.reply = change_everyone
    try:
        r = cli("send", "--yes")
    finally:
        smtp_server.reply = None
        other.dispose()
    assert r.exit_code == 0, r.output
    assert len(changed) == len(readers)  # the change went in during the send
    by = smtp_server.by_rcpt()
    assert sorted(by) == readers
    for email in readers:
        text = by[email][0].message.get_body(("plain",)).get_content()
        assert "Course in May" in text and "Toolkit" not in text, email
    assert rows(env, "SELECT status, count(*) FROM delivery GROUP BY status") == [("sent", 6)]
    assert rows(env, "SELECT count(DISTINCT variant_id) FROM delivery") == [(1,)]
    assert rows(env, "SELECT status FROM issue") == [("sent",)]
    # the next issue follows the new choice
    _news(cli, ("Course in June", "Training"), ("Toolkit two", "Procedures"))
    smtp_server.messages.clear()
    assert cli("send", "--yes").exit_code == 0
    text = smtp_server.by_rcpt()[readers[0]][0].message.get_body(("plain",)).get_content()
    assert "Toolkit two" in text and "Course in June" not in text
