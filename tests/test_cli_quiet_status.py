"""Cron and people: `digest send --scheduled --quiet` prints nothing when there is nothing to
do (cron mails any output), and issues are described in people's words: "sent, 1 failed", and
an issue no process is sending is "unfinished", not "sending"."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from .helpers.smtp import Received, SmtpServer


def _item(cli: Callable[..., Any], n: int = 1) -> None:
    published = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    r = cli("news", "add", "--title", f"Item {n}", "--url", f"https://example.org/n/{n}",
            "--published", published)  # fmt: skip
    assert r.exit_code == 0, r.output


def test_quiet_scheduled_runs_print_nothing_when_there_is_nothing_to_do(
    cli: Callable[..., Any], env: dict[str, str], smtp_server: SmtpServer
) -> None:
    assert cli("subscribers", "add", "ana@example.org").exit_code == 0
    r = cli("send", "--scheduled", "--quiet")  # no items yet
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    assert "No new items" in cli("send", "--scheduled").stdout  # without --quiet it says so
    _item(cli)
    r = cli("send", "--scheduled", "--quiet")  # this one sends: it says what it did
    assert r.exit_code == 0, r.output
    assert "Issue 1:" in r.stdout and "1 sent" in r.stdout
    r = cli("send", "--scheduled", "--quiet")  # already sent this week
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    smtp_server.reply = lambda rcpt, data: "451 4.3.0 Try again later"
    _item(cli, 2)
    r = cli("send", "--quiet")  # something went wrong: reported in full
    assert r.exit_code == 75 and "Issue 2" in r.stdout


def test_issues_are_described_in_peoples_words(
    cli: Callable[..., Any], env: dict[str, str], smtp_server: SmtpServer
) -> None:
    for email in ("ana@example.org", "bo@example.org"):
        assert cli("subscribers", "add", email).exit_code == 0
    smtp_server.reply = lambda rcpt, data: (
        "550 5.1.1 No such user" if rcpt.startswith("bo") else None
    )
    _item(cli)
    cli("send", "--yes")
    listing = cli("issues", "list").stdout
    assert "sent, 1 failed" in listing and "sent_with_failures" not in listing
    assert "Status: sent, 1 failed;" in cli("issues", "show", "1").stdout
    smtp_server.reply = lambda rcpt, data: "451 4.3.0 Try again later"
    _item(cli, 2)
    r = cli("send", "--yes")
    assert r.exit_code == 75, r.output
    assert "retrying later" in cli("issues", "list").stdout, r.output
    assert "retrying later" in cli("issues", "list").stdout  # deferred, nobody sending it now
    assert cli("issues", "cancel", "2", "--yes").exit_code == 0
    assert "cancelled" in cli("issues", "list").stdout
    r = cli("issues", "cancel", "1", "--yes")
    assert "Error: issue 1 is sent, 1 failed, not being sent; nothing to cancel" in r.stderr


@pytest.mark.slow
def test_an_issue_whose_sender_was_killed_is_unfinished_not_sending(
    cli: Callable[..., Any], env: dict[str, str], smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("DIGEST_LEASE_SECONDS", "2")
    monkeypatch.setenv("DIGEST_SMTP_TIMEOUT", "1")
    for i in range(30):
        assert cli("subscribers", "add", f"reader{i}@example.org").exit_code == 0
    _item(cli)
    proc: list[subprocess.Popen[bytes]] = []
    seen: list[str] = []

    def slow(received: Received) -> None:  # the send is under way: look at it, then kill it
        if len(smtp_server.messages) == 5 and not seen:
            seen.append(cli("issues", "list").stdout)
            proc[0].kill()
            proc[0].wait()

    smtp_server.on_data = slow
    proc.append(subprocess.Popen([sys.executable, "-m", "digest", "send", "--yes"],
                                 env=dict(os.environ), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE))  # fmt: skip
    proc[0].communicate(timeout=60)
    assert seen and " sending " in seen[0]  # while it ran
    time.sleep(2.5)  # its leases run out
    listing = cli("issues", "list").stdout
    assert "unfinished" in listing and " sending " not in listing
    show = cli("issues", "show", "1").stdout
    assert "Status: unfinished;" in show and "`digest send` resumes it" in show
