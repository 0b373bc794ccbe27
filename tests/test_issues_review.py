"""Review before the weekly job sends (issues/review.py, send/review.py): review = required.

The Monday workflow end to end, each command a real `digest` process whose wall clock is set
by Debian's libfaketime, against a real SMTP server on loopback: the draft and its review
copy at 07:00, a second run that sends nothing, a refresh, the approval, the send at the next
run; a draft never approved is never sent late; items after approval wait for the next issue.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from .helpers.db import (
    database_url_on_both,  # noqa: F401 (the database_url fixture: both databases)
    rows,
)
from .helpers.sending import digest, execute, faketime_library, finish
from .helpers.smtp import SmtpServer

REVIEWERS = "comms@partnership.example.org,editor@partnership.example.org"
READERS = ["reader0@example.net", "reader1@example.net", "reader2@example.net"]

needs_faketime = pytest.mark.skipif(
    not faketime_library(),
    reason="needs Debian's libfaketime (apt-get install faketime; .ci/run installs it)",
)


@pytest.fixture
def review_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    over = {"DIGEST_REVIEW": "required", "DIGEST_REVIEW_TO": REVIEWERS}
    for k, v in over.items():
        monkeypatch.setenv(k, v)
    return {**env, **over}


def at(env: dict[str, str], moment: str, *args: str) -> tuple[int | None, str, str]:
    """`digest ARGS…` as a process whose clock reads `moment` (UTC) when it starts."""
    return finish(digest(env, *args, faketime=f"@{moment}"), 60)


def add_item(cli: Callable[..., Any], title: str, published: str) -> None:
    url = "https://example.org/" + re.sub(r"\W+", "-", title.lower())
    r = cli("news", "add", "--title", title, "--url", url, "--published", published + "+00:00")
    assert r.exit_code == 0, r.output


def seed_week(cli: Callable[..., Any]) -> None:
    for email in READERS:
        assert cli("subscribers", "add", email).exit_code == 0
    add_item(cli, "Neglect toolkit", "2026-12-03T10:00:00")
    add_item(cli, "Training dates", "2026-12-04T10:00:00")


def sent_to(server: SmtpServer) -> list[str]:
    return [r for m in server.messages for r in m.rcpt_tos]


@needs_faketime
def test_monday_workflow_draft_review_approve_send(
    cli: Callable[..., Any], review_env: dict[str, str], smtp_server: SmtpServer
) -> None:
    seed_week(cli)
    # 07:00: the draft, and one review copy to each reviewer; nobody on the list gets anything.
    # (--quiet still says it: the run did something.)
    code, out, err = at(review_env, "2026-12-07 07:00:00", "send", "--scheduled", "--quiet")
    assert code == 0, (out, err)
    assert "Issue 1 for 2026-W50: 2 items, drafted for review." in out
    assert "Review copy of issue 1 to comms@partnership.example.org: sent" in out
    assert sorted(sent_to(smtp_server)) == sorted(REVIEWERS.split(","))
    review = smtp_server.messages[0].message
    assert review["Subject"].startswith("[REVIEW] Safeguarding News")
    text = review.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert text.startswith("REVIEW COPY of issue 1: not sent to subscribers yet.")
    assert "digest issues approve 1" in text
    html = review.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "REVIEW COPY of issue 1" in html
    assert "/archive/1" not in html and "/review/" in html
    assert "/unsubscribe/test-copy" in html
    assert rows(review_env, "SELECT status, review_sent_at IS NOT NULL FROM issue") == [
        ("draft", 1)
    ]
    assert rows(review_env, "SELECT count(*) FROM delivery") == [(0,)]

    # 07:30 (cron every 30 minutes): waiting, no second review copy, exit 0.
    code, out, err = at(review_env, "2026-12-07 07:30:00", "send", "--scheduled")
    assert code == 0, (out, err)
    assert "Issue 1 is waiting for approval (review copy sent at 2026-12-07 07:00)" in out
    assert len(smtp_server.messages) == 2
    code, out, _ = at(review_env, "2026-12-07 08:00:00", "send", "--scheduled", "--quiet")
    assert (code, out) == (0, "")

    # 08:10 an officer adds an item; refreshing the draft takes it in.
    add_item(cli, "Late briefing", "2026-12-07T08:05:00")
    code, out, err = at(review_env, "2026-12-07 08:15:00", "issues", "refresh", "1")
    assert code == 0, (out, err)
    assert "Refreshed draft issue 1: 1 item added, 0 items removed." in out
    assert "  + Late briefing" in out
    code, out, _ = at(review_env, "2026-12-07 08:20:00", "issues", "list")
    assert re.search(r"^1 .*draft, review copy sent 2026-12-07 07:00\s+3\s", out, re.M), out

    # By hand, `digest send` will not send a draft.
    code, out, err = at(review_env, "2026-12-07 08:25:00", "send", "--yes")
    assert code == 1 and "issue 1 is a draft waiting for approval" in err
    assert len(smtp_server.messages) == 2

    # 09:30 approved; 09:45 another item, which waits for the next issue.
    code, out, err = at(review_env, "2026-12-07 09:30:00", "issues", "approve", "1", "--by", "Ana")
    assert code == 0, (out, err)
    assert "Approved issue 1 (Safeguarding News: " in out and "as Ana at 2026-12-07 09:30." in out
    add_item(cli, "After approval", "2026-12-07T09:45:00")
    code, out, err = at(review_env, "2026-12-07 09:50:00", "issues", "refresh", "1")
    assert code == 1 and "already approved by Ana at 2026-12-07 09:30" in err
    code, out, _ = at(review_env, "2026-12-07 09:55:00", "issues", "show", "1")
    assert "Status: approved by Ana at 2026-12-07 09:30" in out

    # 10:00 the next run sends it to everyone, with the items of the draft only.
    code, out, err = at(review_env, "2026-12-07 10:00:00", "send", "--scheduled")
    assert code == 0, (out, err)
    assert "Issue 1 was approved by Ana at 2026-12-07 09:30; sending it." in out
    assert "Issue 1 is complete." in out
    assert sorted(sent_to(smtp_server)[2:]) == READERS
    body = smtp_server.messages[-1].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Late briefing" in body and "After approval" not in body
    assert "REVIEW" not in body and "/archive/1" in body
    code, out, _ = at(review_env, "2026-12-07 10:30:00", "send", "--scheduled")
    assert code == 0 and "Issue 1 for 2026-W50 is already sent; nothing to do." in out
    assert len(smtp_server.messages) == 5

    # Next Monday the item added after approval is in the next draft.
    code, out, err = at(review_env, "2026-12-14 07:00:00", "send", "--scheduled")
    assert code == 0, (out, err)
    assert "Issue 2 for 2026-W51: 1 item, drafted for review." in out
    assert rows(
        review_env,
        "SELECT ii.title FROM issue_item ii JOIN issue i ON i.id = ii.issue_id WHERE i.number = 2",
    ) == [("After approval",)]


@needs_faketime
def test_a_draft_never_approved_is_never_sent_late(
    cli: Callable[..., Any], review_env: dict[str, str], smtp_server: SmtpServer
) -> None:
    seed_week(cli)
    code, out, err = at(review_env, "2026-12-07 07:00:00", "send", "--scheduled")
    assert code == 0, (out, err)
    # Approving it 25 hours later is refused.
    code, out, err = at(review_env, "2026-12-08 08:00:00", "issues", "approve", "1")
    assert code == 1 and "drafted 25 hours ago, more than max_issue_age_hours (24)" in err
    # The next scheduled run marks it stale, says so on stderr and exits 1; nothing is sent.
    code, out, err = at(review_env, "2026-12-08 08:30:00", "send", "--scheduled", "--quiet")
    assert code == 1, (out, err)
    assert "Error: issue 1 (2026-W50) was not approved and not sent within" in err
    assert "it is stale and will not be sent" in err and "Hint: Its items wait" in err
    assert "Traceback" not in err
    assert len(smtp_server.messages) == 2  # the two review copies only
    assert rows(review_env, "SELECT status FROM issue") == [("stale",)]
    # Later runs of that week: nothing to do, exit 0.
    code, out, _ = at(review_env, "2026-12-08 09:00:00", "send", "--scheduled")
    assert code == 0 and "Issue 1 for 2026-W50 is already stale; nothing to do." in out
    code, out, _ = at(review_env, "2026-12-08 09:05:00", "issues", "list")
    assert "stale, never sent" in out
    # Its items were released: next week's draft carries them, from the stale draft's start.
    code, out, err = at(review_env, "2026-12-14 07:00:00", "send", "--scheduled")
    assert code == 0, (out, err)
    assert "Issue 2 for 2026-W51: 2 items, drafted for review." in out
    assert sent_to(smtp_server).count("reader0@example.net") == 0


def test_cancel_discards_a_draft_and_its_items_go_back(
    cli: Callable[..., Any], review_env: dict[str, str], smtp_server: SmtpServer
) -> None:
    seed_week_now(cli)
    r = cli("send", "--scheduled")
    assert r.exit_code == 0, r.output
    r = cli("issues", "cancel", "1", "--yes")
    assert r.exit_code == 0, r.output
    assert (
        "Discarded draft issue 1: nothing was sent; its items go into the next issue." in r.stdout
    )
    assert rows(review_env, "SELECT status FROM issue") == [("discarded",)]
    r = cli("issues", "approve", "1")
    assert r.exit_code == 1 and "issue 1 is discarded, not a draft; nothing to approve" in r.stderr
    # By hand, `digest send` sends the items now (a new issue; review is for the weekly job).
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    assert "Issue 2: " in r.stdout and "(2 items) to 3 subscribers" in r.stdout


def seed_week_now(cli: Callable[..., Any]) -> None:
    from datetime import UTC, datetime, timedelta

    for email in READERS:
        assert cli("subscribers", "add", email).exit_code == 0
    now = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
    add_item(cli, "Neglect toolkit", (now - timedelta(hours=3)).isoformat())
    add_item(cli, "Training dates", (now - timedelta(hours=2)).isoformat())


def test_approve_records_the_user_name_and_send_by_hand_sends_it(
    cli: Callable[..., Any], review_env: dict[str, str], smtp_server: SmtpServer
) -> None:
    from digest.secret_files import current_user

    seed_week_now(cli)
    assert cli("send", "--scheduled").exit_code == 0
    r = cli("issues", "approve", "1")
    assert r.exit_code == 0, r.output
    assert f"as {current_user()} at " in r.stdout
    assert rows(review_env, "SELECT approved_by, approved_at IS NOT NULL FROM issue") == [
        (current_user(), 1)
    ]
    r = cli("issues", "approve", "1")
    assert r.exit_code == 1 and "issue 1 was already approved by" in r.stderr
    r = cli("preview")
    assert r.exit_code == 0 and "Issue 1 (approved) goes out first; this preview" in r.stdout
    # A subscriber who joined after the draft is in it: recipients are frozen at sending.
    assert cli("subscribers", "add", "late@example.net").exit_code == 0
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    assert "(approved by " in r.stdout and "to 4 subscribers" in r.stdout
    assert "late@example.net" in sent_to(smtp_server)


def test_refresh_takes_out_an_item_that_is_gone_and_refuses_an_empty_draft(
    cli: Callable[..., Any], review_env: dict[str, str], smtp_server: SmtpServer
) -> None:
    seed_week_now(cli)
    assert cli("send", "--scheduled").exit_code == 0
    execute(
        review_env["DIGEST_DATABASE_URL"], "DELETE FROM news_item WHERE title = 'Training dates'"
    )
    r = cli("issues", "refresh", "1")
    assert r.exit_code == 0, r.output
    assert "0 items added, 1 item removed" in r.stdout and "  - Training dates" in r.stdout
    execute(review_env["DIGEST_DATABASE_URL"], "DELETE FROM news_item")
    r = cli("issues", "refresh", "1")
    assert (
        r.exit_code == 1 and "issue 1 would have no items left; it was left as it was" in r.stderr
    )
    assert "digest issues cancel 1" in r.stderr
    assert rows(review_env, "SELECT count(*) FROM issue_item") == [(1,)]
    r = cli("issues", "refresh", "7")
    assert r.exit_code == 1 and "no issue 7" in r.stderr


def test_review_copy_is_sent_again_when_the_relay_was_down(
    cli: Callable[..., Any], review_env: dict[str, str], smtp_server: SmtpServer, monkeypatch
) -> None:
    from digest.demo import free_port

    seed_week_now(cli)
    monkeypatch.setenv("DIGEST_SMTP_URL", f"smtp://127.0.0.1:{free_port()}")
    r = cli("send", "--scheduled")
    assert r.exit_code == 75 and "cannot connect" in r.stderr
    assert rows(review_env, "SELECT status, review_sent_at FROM issue") == [("draft", None)]
    monkeypatch.setenv("DIGEST_SMTP_URL", smtp_server.url)
    r = cli("send", "--scheduled")
    assert r.exit_code == 0, r.output
    assert "Issue 1 is a draft; sending its review copy." in r.stdout
    assert len(smtp_server.messages) == 2


def test_review_settings_are_checked(cli: Callable[..., Any], env, monkeypatch) -> None:
    monkeypatch.setenv("DIGEST_REVIEW", "required")
    r = cli("issues", "list")
    assert r.exit_code == 3 and "review = 'required' needs review_to" in r.stderr
    monkeypatch.setenv("DIGEST_REVIEW_TO", "comms@partnership.example.org, not-an-address")
    r = cli("issues", "list")
    assert r.exit_code == 3 and "review_to" in r.stderr
    monkeypatch.setenv(
        "DIGEST_REVIEW_TO", "comms@partnership.example.org, Ed@Partnership.example.org"
    )
    r = cli("config", "show")
    assert r.exit_code == 0, r.output
    assert re.search(r"^review_to\s+comms@partnership.example.org, Ed@partnership.example.org\s+env DIGEST_REVIEW_TO$",
                     r.stdout, re.M), r.stdout  # fmt: skip
    monkeypatch.setenv("DIGEST_REVIEW", "sometimes")
    r = cli("issues", "list")
    assert r.exit_code == 3 and "'review'" in r.stderr


def test_review_commands_have_help(cli: Callable[..., Any]) -> None:
    for command in ("approve", "refresh"):
        r = cli("issues", command, "--help")
        assert r.exit_code == 0 and "Example: digest issues " + command in r.stdout
    assert "--by" in cli("issues", "approve", "--help").stdout
    r = cli("issues", "approve")
    assert r.exit_code == 2


@pytest.mark.postgres
def test_two_runs_at_once_make_one_draft(
    cli: Callable[..., Any], review_env: dict[str, str], smtp_server: SmtpServer, database_url: str
) -> None:
    """PostgreSQL (no send lock): two scheduled runs at the same moment make one draft between
    them, both exit 0, nobody on the list gets anything, and each reviewer one review copy."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite: one send at a time (the send lock)")
    seed_week_now(cli)
    procs = [digest(review_env, "send", "--scheduled") for _ in range(2)]
    results = [finish(p, 60) for p in procs]
    assert [code for code, _, _ in results] == [0, 0], results
    assert rows(review_env, "SELECT number, status FROM issue") == [(1, "draft")]
    assert sorted(sent_to(smtp_server)) == sorted(REVIEWERS.split(","))


@pytest.mark.postgres
def test_two_runs_at_once_send_one_review_copy(
    cli: Callable[..., Any], review_env: dict[str, str], smtp_server: SmtpServer, database_url: str
) -> None:
    """PostgreSQL: while one scheduled run sends the review copy (a slow relay: 0.5 s a
    message), a second one that finds the draft does not send it again (a lock on the issue's
    review copy, then a second look at whether it went): each reviewer gets one copy."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite: one send at a time (the send lock)")
    seed_week_now(cli)
    smtp_server.on_data = lambda _: time.sleep(0.5)
    first = digest(review_env, "send", "--scheduled")
    deadline = time.monotonic() + 30
    while not rows(review_env, "SELECT number FROM issue") and time.monotonic() < deadline:
        time.sleep(0.05)  # until the first run has made its draft
    second = digest(review_env, "send", "--scheduled")
    results = [finish(p, 60) for p in (first, second)]
    assert [code for code, _, _ in results] == [0, 0], results
    assert sorted(sent_to(smtp_server)) == sorted(REVIEWERS.split(","))
    said = results[0][1] + results[1][1]
    assert "Another run is sending the review copy of issue 1" in said, said


def test_a_draft_left_when_review_is_turned_off_still_waits(
    cli: Callable[..., Any], review_env: dict[str, str], smtp_server: SmtpServer, monkeypatch
) -> None:
    """Turning review off does not send a draft nobody approved, nor try to review it."""
    seed_week_now(cli)
    assert cli("send", "--scheduled").exit_code == 0
    monkeypatch.setenv("DIGEST_REVIEW", "none")
    monkeypatch.delenv("DIGEST_REVIEW_TO")
    execute(review_env["DIGEST_DATABASE_URL"], "UPDATE issue SET review_sent_at = NULL")
    r = cli("send", "--scheduled")
    assert r.exit_code == 0, r.output
    assert (
        "Issue 1 is waiting for approval (no review_to: no review copy); nothing sent." in r.stdout
    )
    assert len(smtp_server.messages) == 2
    assert cli("issues", "approve", "1").exit_code == 0
    r = cli("send", "--scheduled")
    assert r.exit_code == 0 and "Issue 1 is complete." in r.stdout


def test_refresh_respects_staff_decisions_and_news_list_shows_the_draft(
    cli: Callable[..., Any], review_env: dict[str, str], smtp_server: SmtpServer
) -> None:
    """An item held back after the draft was made leaves it at `issues refresh`; until then
    `news list` says it is in the draft."""
    seed_week_now(cli)
    assert cli("send", "--scheduled").exit_code == 0
    r = cli("news", "list")
    assert r.exit_code == 0 and "draft in #1" in r.stdout, r.stdout
    r = cli("news", "hold", "https://example.org/training-dates", "--reason", "not yet")
    assert r.exit_code == 0, r.output
    r = cli("issues", "refresh", "1")
    assert r.exit_code == 0, r.output
    assert "0 items added, 1 item removed" in r.stdout and "  - Training dates" in r.stdout
    assert rows(review_env, "SELECT title FROM issue_item") == [("Neglect toolkit",)]
