"""Selecting an issue's items (issues.py): only what is new since the last issue, including an
item that arrived late with an older date, never a new feed's archive; nothing new, no issue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .helpers.seed import seed
from .helpers.smtp import SmtpServer


def test_new_items_make_a_second_issue_with_only_new_items(
    cli, env, smtp_server: SmtpServer
) -> None:
    seed(cli, subscribers=2, items=2)
    assert cli("send", "--yes").exit_code == 0
    r = cli("news", "add", "--title", "Fresh item", "--url", "https://example.org/fresh")
    assert r.exit_code == 0
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    assert "Issue 2:" in r.stdout and "(1 item)" in r.stdout
    second = [
        m
        for m in smtp_server.messages
        if "Fresh item" in m.message.get_body(("plain",)).get_content()
    ]
    assert len(second) == 2
    assert "Item 0" not in second[0].message.get_body(("plain",)).get_content()


def test_an_item_that_arrives_late_with_an_older_date_is_in_the_next_issue(
    cli, env, smtp_server: SmtpServer
) -> None:
    seed(cli, subscribers=1, items=1)
    assert cli("send", "--yes").exit_code == 0
    # fetched after the issue went out, but dated before it (a slow feed)
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    cli(
        "news",
        "add",
        "--title",
        "Late but new",
        "--url",
        "https://example.org/late",
        "--published",
        two_days_ago,
    )
    # far older items that arrive now (a new feed's archive) stay out
    cli(
        "news",
        "add",
        "--title",
        "Archive",
        "--url",
        "https://example.org/old",
        "--published",
        "2013-09-12",
    )
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    assert "(1 item) to 1 subscriber." in r.stdout
    body = smtp_server.messages[-1].message.get_body(("plain",)).get_content()
    assert "Late but new" in body and "Archive" not in body


def test_nothing_to_send(cli, env, smtp_server: SmtpServer) -> None:
    cli("subscribers", "add", "a@example.net")
    r = cli("send", "--yes")
    assert r.exit_code == 0
    assert "nothing to send" in r.stdout
    assert smtp_server.messages == []
