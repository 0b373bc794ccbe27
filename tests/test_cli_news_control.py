"""Editorial control through the CLI (issue #13): `digest news edit`, `remove`/`restore`,
`hold`/`release`, `include` and `news list --status`; what each does to the next issue (a real
send to a real SMTP server), the record it leaves, and bad input (exit codes, no traceback)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from sqlmodel import Session, select

from digest.dates import date_range
from digest.db import make_engine
from digest.models import Issue, IssueItem, NewsItem, utcnow

from .helpers.db import (
    database_url_on_both,  # noqa: F401 (the database_url fixture: both databases)
)
from .helpers.feeds import SEED_PAGE, no_traceback, serve
from .helpers.smtp import SmtpServer

Cli = Callable[..., Any]
SEED_URL = "https://www.teescpp.example.org/news/item.aspx?id=92"


def _add(cli: Cli, title: str, url: str, *extra: str) -> None:
    r = cli("news", "add", "--title", title, "--url", url, *extra)
    assert r.exit_code == 0, r.output


def _listing(cli: Cli, *args: str) -> list[dict[str, Any]]:
    r = cli("news", "list", "--format", "json", *args)
    assert r.exit_code == 0, r.output
    rows: list[dict[str, Any]] = json.loads(r.stdout)
    return rows


def _statuses(cli: Cli) -> dict[str, str]:
    return {row["title"]: row["status"] for row in _listing(cli)}


def _item(env: dict[str, str], item_id: int) -> NewsItem:
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    try:
        with Session(engine) as session:
            found = session.get(NewsItem, item_id)
            assert found is not None
            return found
    finally:
        engine.dispose()


def _sent_titles(env: dict[str, str]) -> list[str]:
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    try:
        with Session(engine) as session:
            issue = session.exec(select(Issue).order_by(Issue.number.desc())).first()  # type: ignore[attr-defined]
            assert issue is not None
            rows = session.exec(
                select(IssueItem).where(IssueItem.issue_id == issue.id).order_by(IssueItem.position)
            ).all()
            return [r.title for r in rows]
    finally:
        engine.dispose()


def _send(cli: Cli) -> Any:
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    return r


def test_add_of_an_existing_link_keeps_what_it_is_not_given(cli: Cli, env: dict[str, str]) -> None:
    _add(cli, "Neglect toolkit", "https://example.org/n/1", "--summary", "<p>Use it.</p>",
         "--category", "Procedures", "--published", "2026-11-20")  # fmt: skip
    r = cli("news", "add", "--title", "Neglect toolkit (2027)", "--url", "https://example.org/n/1")
    assert (r.exit_code, r.stdout) == (
        0,
        "Updated 'Neglect toolkit (2027)' (2026-11-20 00:00): title changed.\n",
    )
    item = _item(env, 1)
    assert (item.summary_html, item.category) == ("<p>Use it.</p>", "Procedures")
    assert item.published_at.date().isoformat() == "2026-11-20"  # kept
    r = cli("news", "add", "--title", "Neglect toolkit (2027)", "--url", "https://example.org/n/1",
            "--summary", "Use it now.", "--category", "Training")  # fmt: skip
    assert (
        r.stdout
        == "Updated 'Neglect toolkit (2027)' (2026-11-20 00:00): summary, category changed.\n"
    )
    r = cli("news", "add", "--title", "Neglect toolkit (2027)", "--url", "https://example.org/n/1")
    assert r.stdout == "Unchanged: 'Neglect toolkit (2027)' (2026-11-20 00:00).\n"
    assert _item(env, 1).summary_text == "Use it now."


def test_edit_changes_only_the_options_given(cli: Cli, env: dict[str, str]) -> None:
    _add(cli, "Neglect toolkit", "https://example.org/n/1", "--summary", "Use it.",
         "--category", "Procedures", "--published", "2026-11-20")  # fmt: skip
    r = cli("news", "edit", "1", "--title", "Neglect toolkit (revised)")
    assert (r.exit_code, r.stdout) == (
        0,
        "Updated item 1 'Neglect toolkit (revised)' (2026-11-20 00:00): title changed.\n",
    )
    item = _item(env, 1)
    assert (item.summary_text, item.category, item.edited) == ("Use it.", "Procedures", "title")
    # by link, a new date and an emptied summary
    r = cli("news", "edit", "https://example.org/n/1#top", "--published", "2026-11-22",
            "--summary", "")  # fmt: skip
    assert r.stdout == (
        "Updated item 1 'Neglect toolkit (revised)' (2026-11-22 00:00): summary, date changed.\n"
    )
    assert _item(env, 1).summary_html == ""
    r = cli("news", "edit", "1", "--category", "Procedures")
    assert r.stdout == (
        "Unchanged: item 1 'Neglect toolkit (revised)' (2026-11-22 00:00) already says that.\n"
    )
    # a new link: the item follows it (adding the new link again is the same item)
    r = cli("news", "edit", "1", "--url", "https://example.org/n/1-revised")
    assert "link changed" in r.stdout
    _add(cli, "Neglect toolkit (revised)", "https://example.org/n/1-revised")
    assert [row["id"] for row in _listing(cli)] == [1]


def test_edited_fields_survive_the_next_fetch_of_the_feed(
    cli: Cli, env: dict[str, str], http: HTTPServer
) -> None:
    body = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Board</title>'
        "<link>https://board.example.org/</link><item><title>Case review publshed</title>"
        "<link>https://board.example.org/r/1</link><description>First text.</description>"
        "<pubDate>Mon, 23 Nov 2026 09:00:00 GMT</pubDate></item></channel></rss>"
    )
    url = serve(http, "/feed", body)
    assert cli("feeds", "add", url, "--name", "Board").exit_code == 0
    assert cli("news", "edit", "1", "--title", "Case review published").exit_code == 0
    http.clear()
    serve(http, "/feed", body.replace("First text.", "Second text."))
    r = cli("feeds", "fetch")
    assert (r.exit_code, r.stdout) == (0, "Board: 0 new, 1 updated, 0 unchanged.\n")
    item = _item(env, 1)
    # the feed's own change comes in; staff's correction stays
    assert (item.title, item.summary_text) == ("Case review published", "Second text.")


def test_remove_keeps_an_item_out_records_it_and_restore_undoes_it(
    cli: Cli, env: dict[str, str], smtp_server: SmtpServer
) -> None:
    assert cli("subscribers", "add", "ana@example.org").exit_code == 0
    _add(cli, "Ordinary news", "https://example.org/a")
    _add(cli, "Case-specific item", "https://example.org/b")
    r = cli("news", "remove", "2", "--by", "Comms officer", "--reason", "names a family")
    assert r.exit_code == 0, r.output
    first, second = r.stdout.splitlines()
    assert first.startswith("Removed item 2 'Case-specific item' (")
    assert first.endswith("): kept out of every future issue (by Comms officer, "
                          f"{first[-18:-2]}).")  # fmt: skip
    assert second == "Undo with `digest news restore 2`."
    row = _listing(cli, "--status", "removed")[0]
    assert (row["id"], row["status"], row["decided_by"], row["reason"]) == (
        2, "removed", "Comms officer", "names a family",
    )  # fmt: skip
    r = cli("news", "add", "--title", "Case-specific item", "--url", "https://example.org/b")
    assert r.stdout == (
        "Unchanged: 'Case-specific item' (" + r.stdout.split("(", 1)[1].split(")", 1)[0] + ").\n"
        "Note: item 2 is removed: no issue takes it until `digest news restore 2`.\n"
    )
    r = cli("news", "remove", "https://example.org/b")
    assert (r.exit_code, r.stdout) == (
        0,
        "No change: item 2 'Case-specific item' is removed already (status: removed).\n",
    )
    r = cli("news", "hold", "2")
    assert r.exit_code == 2
    assert r.stderr == (
        "Error: item 2 is removed: it cannot be held from there\n"
        "Hint: `digest news restore 2` first.\n"
    )
    r = cli("news", "include", "2")
    assert r.exit_code == 2 and "item 2 is removed" in r.stderr
    _send(cli)
    assert _sent_titles(env) == ["Ordinary news"]
    assert _statuses(cli) == {"Ordinary news": "sent in #1", "Case-specific item": "removed"}
    r = cli("news", "restore", "2")
    assert r.exit_code == 0
    assert r.stdout.startswith("Restored item 2 'Case-specific item' (")
    assert "): the next issue takes it (by " in r.stdout  # restored after issue 1: still taken
    assert _statuses(cli)["Case-specific item"] == "next"
    r = cli("news", "restore", "2")
    assert r.stdout == "No change: item 2 'Case-specific item' is not removed (status: next).\n"


def test_hold_keeps_an_item_out_until_released(
    cli: Cli, env: dict[str, str], smtp_server: SmtpServer
) -> None:
    assert cli("subscribers", "add", "ana@example.org").exit_code == 0
    _add(cli, "Embargoed report", "https://example.org/e")
    _add(cli, "Other news", "https://example.org/o")
    r = cli("news", "hold", "1", "--reason", "until the board meets")
    assert r.exit_code == 0
    assert "kept out of issues until released" in r.stdout
    assert r.stdout.endswith("Undo with `digest news release 1`.\n")
    assert (
        cli("news", "hold", "1").stdout
        == "No change: item 1 'Embargoed report' is held already (status: held).\n"
    )
    preview = cli("preview")
    assert preview.exit_code == 0 and "1 item in 1 section." in preview.stdout
    _send(cli)
    assert _sent_titles(env) == ["Other news"]
    r = cli("news", "release", "1")
    assert r.exit_code == 0
    assert "): the next issue takes it (by " in r.stdout  # released after issue 1: still taken
    assert _statuses(cli) == {"Embargoed report": "next", "Other news": "sent in #1"}
    assert cli("news", "release", "1").stdout == (
        "No change: item 1 'Embargoed report' is neither held nor included (status: next).\n"
    )


def test_include_sends_the_old_seed_item_with_its_date_and_the_period_unchanged(
    cli: Cli, env: dict[str, str], http: HTTPServer, smtp_server: SmtpServer
) -> None:
    """The real seed item (dated "Thurs 12th Sept 2013") goes out when staff include it; the
    email shows its real date and the subject names this week, not September 2013."""
    assert cli("subscribers", "add", "ana@example.org").exit_code == 0
    page = serve(http, "/news/item.aspx", SEED_PAGE, content_type="text/html; charset=utf-8")
    assert cli("news", "import-page", page + "?id=92", "--category", "Procedures").exit_code == 0
    _add(cli, "This week's news", "https://example.org/w")
    assert _statuses(cli)[_item(env, 1).title] == "too old"
    r = cli("news", "include", SEED_URL, "--by", "Comms officer")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"Included item 1 {_item(env, 1).title!r} (2013-09-12 00:00): "
                               "in the next issue whatever its date; its date stays as it is")  # fmt: skip
    assert [row["included"] for row in _listing(cli, "--status", "next")] == [False, True]
    before = utcnow()
    _send(cli)
    message = smtp_server.messages[0].message
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Thursday 12 September 2013" in text and SEED_URL in text
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    with Session(engine) as session:
        issue = session.exec(select(Issue)).one()
        stored = session.get(NewsItem, 1)
        assert stored is not None and stored.published_at.year == 2013  # not re-dated
    engine.dispose()
    assert before - issue.period_start <= timedelta(days=7, minutes=1)  # the usual week
    from zoneinfo import ZoneInfo

    expected = date_range(issue.period_start, issue.period_end, ZoneInfo("Europe/London"))
    assert issue.subject == f"Safeguarding News: {expected}" == message["Subject"]
    assert "2013" not in issue.subject and "September" not in issue.subject
    # sent once: it is not included again, and cannot be
    assert _statuses(cli)[stored.title] == "sent in #1"
    r = cli("news", "include", "1")
    assert r.exit_code == 2
    assert "Error: item 1 went out in issue #1 already; an item goes out once" in r.stderr


def test_list_statuses_filters_and_formats(
    cli: Cli, env: dict[str, str], smtp_server: SmtpServer
) -> None:
    assert cli("subscribers", "add", "ana@example.org").exit_code == 0
    _add(cli, "Sent one", "https://example.org/1")
    _send(cli)
    _add(cli, "Waiting", "https://example.org/2", "--category", "Training")
    _add(cli, "Held", "https://example.org/3")
    _add(cli, "Removed", "https://example.org/4")
    _add(cli, "Old", "https://example.org/5", "--published", "2013-09-12")
    _add(cli, "Ahead", "https://example.org/6", "--published", "2030-01-01")
    assert cli("news", "hold", "3").exit_code == 0
    assert cli("news", "remove", "4").exit_code == 0
    assert _statuses(cli) == {
        "Ahead": "later", "Waiting": "next", "Held": "held", "Removed": "removed",
        "Sent one": "sent in #1", "Old": "too old",
    }  # fmt: skip
    r = cli("news", "list")
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["id", "status", "published", "category", "title", "url"]
    assert any(line.startswith("1   sent in #1") for line in lines)
    assert any(line.startswith("5   too old") for line in lines)
    assert lines[-1] == "6 items"
    for status, titles in [("next", ["Waiting"]), ("held", ["Held"]), ("removed", ["Removed"]),
                           ("sent", ["Sent one"]), ("too-old", ["Old"]), ("later", ["Ahead"])]:  # fmt: skip
        assert [row["title"] for row in _listing(cli, "--status", status)] == titles
    r = cli("news", "list", "--status", "too-old", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [(row["id"], row["status"], row["title"]) for row in rows] == [("5", "too old", "Old")]
    r = cli("news", "list", "--status", "held", "--format", "table")
    assert r.stdout.splitlines()[-1] == "1 item"
    r = cli("news", "list", "--status", "nonsense")
    assert r.exit_code == 2 and "nonsense" in r.stderr
    empty = cli("news", "list", "--status", "next", "--since", "2031-01-01", "--format", "csv")
    assert empty.stdout.startswith("id,status,included,published")


@pytest.mark.parametrize(
    ("args", "code", "message", "hint"),
    [
        (
            ["news", "edit", "99", "--title", "x"],
            1,
            "Error: no news item with id 99",
            "Hint: `digest news list` shows the items with their ids.",
        ),
        (
            ["news", "remove", "https://example.org/nope"],
            1,
            "Error: no news item at https://example.org/nope",
            "news list",
        ),
        (
            ["news", "hold", "not a link"],
            2,
            "Error: 'not a link' is neither an item's id nor a link",
            "http(s) link",
        ),
        (["news", "include", "42"], 1, "Error: no news item with id 42", "news list"),
        (["news", "release", "7"], 1, "Error: no news item with id 7", "news list"),
        (["news", "restore", "javascript:alert(1)"], 2, "is neither an item's id nor a link", ""),
        (["news", "edit", "1"], 2, "Error: nothing to change", "--title, --url, --summary"),
        (
            ["news", "edit", "1", "--url", "https://example.org/2"],
            2,
            "Error: --url: item 2 ('Second') already has that link",
            "news remove 2",
        ),
        (
            ["news", "edit", "1", "--url", "ftp://example.org/x"],
            2,
            "is not an absolute http(s) link",
            "",
        ),
        (["news", "edit", "1", "--title", "  "], 2, "Error: the title is empty", ""),
        (["news", "edit", "1", "--published", "someday"], 2, "Error: --published:", ""),
    ],
)
def test_bad_input_is_refused_clearly(
    cli: Cli, env: dict[str, str], args: list[str], code: int, message: str, hint: str
) -> None:
    _add(cli, "First", "https://example.org/1")
    _add(cli, "Second", "https://example.org/2")
    r = cli(*args)
    assert r.exit_code == code, r.output
    assert message in r.stderr and hint in r.stderr
    no_traceback(r)
    assert [row["title"] for row in _listing(cli)] == ["Second", "First"]  # nothing changed
    assert _item(env, 1).title == "First" and _item(env, 1).control == ""


@pytest.mark.parametrize("command", ["edit", "remove", "restore", "hold", "release", "include"])
def test_every_new_command_has_help_with_an_example(cli: Cli, command: str) -> None:
    r = cli("news", command, "--help")
    assert r.exit_code == 0
    usage = r.stdout.splitlines()[0]
    assert usage.endswith(f" news {command} [OPTIONS] {{ID|URL}}")
    assert f"Example: digest news {command}" in " ".join(r.stdout.split())
