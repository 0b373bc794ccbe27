"""End to end with the real messages digest sends (aiosmtpd on loopback): the List-Unsubscribe
mailto: of a received issue, used as a mail client does, unsubscribes that reader; a complaint
(ARF) carrying the received message unsubscribes its reader; a 5xx during sending counts as a
permanent bounce at the next fetch. None of them is in the next issue."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from digest.db import make_engine

from .helpers.smtp import Received, SmtpServer
from .helpers.web import rows as engine_rows


def rows(env: dict[str, str], sql: str) -> list[tuple[Any, ...]]:
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    try:
        return engine_rows(engine, sql)
    finally:
        engine.dispose()


def _news(cli: Callable[..., Any], tag: str) -> None:
    now = datetime.now(UTC)
    r = cli("news", "add", "--title", f"Item {tag}", "--url", f"https://example.org/{tag}",
            "--published", (now - timedelta(minutes=5)).isoformat())  # fmt: skip
    assert r.exit_code == 0, r.output


def _mailto(received: Received) -> tuple[str, str]:
    """(address, subject) of the mailto: in List-Unsubscribe (RFC 2369, RFC 6068)."""
    header = str(received.message["List-Unsubscribe"])
    [link] = [p.strip(" <>") for p in header.split(",") if "mailto:" in p]
    parts = urlsplit(link)
    return unquote(parts.path), parse_qs(parts.query)["subject"][0]


def _as_delivered(received: Received) -> bytes:
    """The message as the receiving MTA stored it: with its Return-Path (the envelope)."""
    return f"Return-Path: <{received.mail_from}>\r\n".encode() + received.data


def _client_unsubscribe(received: Received) -> bytes:
    address, subject = _mailto(received)
    msg = EmailMessage()
    msg["From"] = received.rcpt_tos[0]
    msg["To"] = address
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{secrets.token_hex(8)}@mail.example.net>"
    msg.set_content("This message was automatically generated to unsubscribe.")
    return msg.as_bytes()


def _complaint(received: Received) -> bytes:
    """An ARF report (RFC 5965) with the delivered message attached, as a provider sends."""
    boundary = "arf-" + secrets.token_hex(6)
    head = (
        "From: feedback@fbl.example.net\r\nTo: bounces@partnership.example.org\r\n"
        f"Subject: Complaint\r\nMessage-ID: <{secrets.token_hex(8)}@fbl.example.net>\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"\r\n\r\n'
    )
    parts = (
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n"
        f"--{boundary}\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: ExampleFBL/1.0\r\nVersion: 1\r\n\r\n"
        f"--{boundary}\r\nContent-Type: message/rfc822\r\n\r\n"
    ).encode()
    return head.encode() + parts + _as_delivered(received) + f"\r\n--{boundary}--\r\n".encode()


def test_mailto_unsubscribe_complaint_and_smtp_5xx_leave_the_next_issue(
    cli: Callable[..., Any], env: dict[str, str], smtp_server: SmtpServer, workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("DIGEST_BOUNCE_ADDRESS", "bounces@partnership.example.org")
    for i in range(5):
        assert cli("subscribers", "add", f"reader{i}@example.net").exit_code == 0
    smtp_server.reply = lambda rcpt, data: (
        "550 5.1.1 No such mailbox" if rcpt == "reader2@example.net" else None
    )
    _news(cli, "one")
    r = cli("send", "--yes")
    assert "Issue 1: 4 sent, 1 failed" in r.stdout, r.output
    got = {m.rcpt_tos[0]: m for m in smtp_server.messages}
    assert got["reader0@example.net"].mail_from.startswith("bounces+")
    address, subject = _mailto(got["reader0@example.net"])
    assert address == "bounces@partnership.example.org" and subject.startswith("unsubscribe ")

    box = workdir / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True)
    (box / "new" / "1.x").write_bytes(_client_unsubscribe(got["reader0@example.net"]))
    (box / "new" / "2.x").write_bytes(_complaint(got["reader1@example.net"]))
    r = cli("inbox", "fetch", str(box))
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [
        "1 refused during sending (5xx) counted as permanent bounces.",
        "2 read: 0 bounces (0 permanent, 0 temporary), 1 complaints, 1 unsubscribes, "
        "0 auto-replies ignored, 0 for a person, 0 already seen",
    ]
    assert dict(rows(env, "SELECT email, status FROM subscriber")) == {
        "reader0@example.net": "unsubscribed", "reader1@example.net": "unsubscribed",
        "reader2@example.net": "bounced", "reader3@example.net": "active",
        "reader4@example.net": "active",
    }  # fmt: skip
    sources = rows(
        env,
        "SELECT s.email, e.source FROM subscriber_event e JOIN subscriber s "
        "ON s.id = e.subscriber_id WHERE e.status != 'active' ORDER BY s.email",
    )
    assert sources == [
        ("reader0@example.net", "email"), ("reader1@example.net", "complaint"),
        ("reader2@example.net", "bounce"),
    ]  # fmt: skip
    r = cli("issues", "show", "1")
    assert "Bounces: 1 permanent, 0 temporary; complaints: 1; unsubscribed by email: 1" in r.stdout

    smtp_server.messages.clear()
    smtp_server.reply = None
    _news(cli, "two")
    r = cli("send", "--yes")
    assert "Issue 2: 2 sent" in r.stdout, r.output
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "reader3@example.net", "reader4@example.net"
    ]  # fmt: skip
