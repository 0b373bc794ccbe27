"""Issues after the send (issues.py): `issues show`/`list`, `issues cancel` of an unfinished issue
and `issues retry` of failed deliveries."""

from __future__ import annotations

from .helpers.db import rows
from .helpers.seed import seed
from .helpers.smtp import SmtpServer


def test_issues_show_unknown(cli, env) -> None:
    r = cli("issues", "show", "9")
    assert r.exit_code == 1 and "Error: no issue 9" in r.stderr
    assert "No issues yet" in cli("issues", "list").stdout


def test_cancel_a_stale_issue(cli, env, smtp_server: SmtpServer) -> None:
    seed(cli, subscribers=3, items=1)
    smtp_server.reply = lambda rcpt, data: "451 4.3.0 later"
    assert cli("send", "--yes").exit_code == 75
    r = cli("issues", "cancel", "1", "--yes")
    assert r.exit_code == 0, r.output
    assert "Cancelled issue 1: 3 deliveries will not be sent." in r.stdout
    assert rows(env, "SELECT status FROM issue") == [("cancelled",)]
    smtp_server.reply = None
    r = cli("send", "--yes")
    assert "nothing to send" in r.stdout
    assert smtp_server.messages == []
    r = cli("issues", "cancel", "1", "--yes")
    assert r.exit_code == 1 and "is cancelled, not being sent" in r.stderr


def test_retry_requeues_failed_on_purpose(cli, env, smtp_server: SmtpServer) -> None:
    seed(cli, subscribers=3, items=1)
    smtp_server.reply = lambda rcpt, data: (
        "550 5.2.2 Mailbox full" if rcpt == "reader1@example.net" else None
    )
    assert cli("send", "--yes").exit_code == 65  # complete, one address failed for good
    assert rows(env, "SELECT status FROM issue") == [("sent_with_failures",)]
    smtp_server.reply = None
    r = cli("issues", "retry", "1")
    assert r.exit_code == 0
    assert "Queued 1 delivery of issue 1 again" in r.stdout
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    assert "Resuming issue 1" in r.stdout
    assert rows(env, "SELECT status FROM issue") == [("sent",)]
    ids = [
        m.message["Message-ID"]
        for m in smtp_server.messages
        if m.rcpt_tos == ["reader1@example.net"]
    ]
    assert len(ids) == 1
    assert (
        cli("issues", "retry", "1").stdout.strip()
        == "Issue 1 has no deferred or failed deliveries."
    )
