"""Double opt-in through the web app (web/app.py, lifecycle.py): the confirmation email caught by
a real SMTP server, the same answer for everyone, the cooldown, bad addresses, robots, expiry."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from digest.config import Settings
from digest.web.app import create_app

from .helpers.clock import Clock
from .helpers.smtp import SmtpServer
from .helpers.web import (
    BASE,
    confirm_link,
    events_of,
    path_of,
    rows,
    snapshot,
    status_of,
)


def test_double_opt_in_with_the_email_caught_by_a_real_smtp_server(
    client: TestClient, engine: Engine, smtp_server: SmtpServer
) -> None:
    r = client.post("/subscribe", data={"email": "Ana.Jones@Example.org", "name": "Ana Jones"})
    assert r.status_code == 200
    assert "Check your inbox" in r.text
    assert status_of(engine, "Ana.Jones@Example.org") == ("pending", "web")
    smtp_server.wait_for(1)
    (received,) = smtp_server.messages
    msg = received.message
    assert received.rcpt_tos == ["Ana.Jones@example.org"]
    assert received.mail_from == "news@partnership.example.org"
    assert msg["Subject"] == "Please confirm your subscription to Safeguarding News"
    assert msg["To"].addresses[0].display_name == "Ana Jones"
    assert msg["Message-ID"] and msg["Date"]
    assert msg.get_content_type() == "multipart/alternative"
    link = confirm_link(received)
    assert link.startswith(f"{BASE}/confirm/")
    html = msg.get_body(("html",)).get_content()
    assert f'href="{link}"' in html
    assert "Civic Centre, Exampletown EX1 2AB" in html

    # The link shows a page with a button; only the button's POST confirms.
    before = snapshot(engine)
    page = client.get(path_of(link))
    assert page.status_code == 200
    assert f'<form method="post" action="{path_of(link)}">' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert snapshot(engine) == before
    done = client.post(path_of(link))
    assert done.status_code == 200 and "You are subscribed" in done.text
    assert status_of(engine, "Ana.Jones@Example.org") == ("active", "web")
    confirmed_at = rows(engine, "SELECT confirmed_at FROM subscriber")[0][0]
    assert confirmed_at is not None
    assert events_of(engine, "Ana.Jones@Example.org") == [
        ("pending", "web", "added"),
        ("pending", "web", "confirmation sent"),
        ("active", "web", "confirmed by email link"),
    ]
    # Pressing it again changes nothing.
    again = client.post(path_of(link))
    assert again.status_code == 200 and "already subscribed" in again.text
    assert len(events_of(engine, "Ana.Jones@Example.org")) == 3


def test_subscribe_answers_the_same_for_new_pending_active_and_unsubscribed(
    cli: Callable[..., Any], client: TestClient, engine: Engine, smtp_server: SmtpServer
) -> None:
    cli("subscribers", "add", "active@example.org")
    cli("subscribers", "add", "pending@example.org", "--status", "pending")
    cli("subscribers", "add", "left@example.org")
    cli("subscribers", "unsubscribe", "left@example.org")
    cli("subscribers", "add", "erased@example.org")
    cli("subscribers", "remove", "erased@example.org", "--yes")
    answers = {}
    for who in ("new", "pending", "active", "left", "erased"):
        email = f"{who}@example.org"
        r = client.post("/subscribe", data={"email": email, "name": ""})
        headers = {k: v for k, v in r.headers.items() if k != "content-length"}
        answers[who] = (r.status_code, headers, r.text.replace(email, "EMAIL"))
    assert len({repr(a) for a in answers.values()}) == 1, answers
    smtp_server.wait_for(4)
    time.sleep(0.2)
    # Everyone but the active subscriber is sent a link; nobody's status changed by asking.
    assert sorted(smtp_server.by_rcpt()) == [
        "erased@example.org", "left@example.org", "new@example.org", "pending@example.org"
    ]  # fmt: skip
    assert status_of(engine, "left@example.org") == ("unsubscribed", "cli")
    assert status_of(engine, "active@example.org") == ("active", "cli")
    # The one who unsubscribed comes back only by confirming.
    link = confirm_link(smtp_server.by_rcpt()["left@example.org"][0])
    assert client.post(path_of(link)).status_code == 200
    assert status_of(engine, "left@example.org") == ("active", "web")


def test_confirmation_emails_are_limited_by_the_cooldown(
    client: TestClient, engine: Engine, smtp_server: SmtpServer, clock: Clock
) -> None:
    for _ in range(3):
        assert client.post("/subscribe", data={"email": "ana@example.org"}).status_code == 200
    smtp_server.wait_for(1)
    assert len(smtp_server.messages) == 1
    clock.offset += timedelta(minutes=16)  # the default cooldown is 15 minutes
    client.post("/subscribe", data={"email": "ana@example.org"})
    smtp_server.wait_for(2)
    assert len(smtp_server.messages) == 2
    # Both links work: the newer does not cancel the older.
    first, second = (confirm_link(m) for m in smtp_server.messages)
    assert first != second
    assert client.get(path_of(first)).status_code == 200


def test_a_confirmation_the_server_refused_does_not_hold_the_cooldown(
    client: TestClient, engine: Engine, smtp_server: SmtpServer
) -> None:
    smtp_server.reply = lambda rcpt, data: "451 4.3.0 Try again later"
    client.post("/subscribe", data={"email": "ana@example.org"})
    assert events_of(engine, "ana@example.org")[-1] == (
        "pending", "web", "confirmation not sent: 451 4.3.0 Try again later"
    )  # fmt: skip
    smtp_server.reply = None
    client.post("/subscribe", data={"email": "ana@example.org"})
    smtp_server.wait_for(1)
    assert [m.rcpt_tos for m in smtp_server.messages] == [["ana@example.org"]]


def test_invalid_address_shows_the_form_again(client: TestClient, engine: Engine) -> None:
    r = client.post("/subscribe", data={"email": "not an address", "name": "<b>Ana</b>"})
    assert r.status_code == 400
    assert 'role="alert"' in r.text and "is not a valid email address" in r.text
    assert 'value="&lt;b&gt;Ana&lt;/b&gt;"' in r.text  # escaped, kept for a second try
    assert rows(engine, "SELECT count(*) FROM subscriber") == [(0,)]
    assert client.post("/subscribe", data={"email": "x" * 2000}).status_code == 400


def test_a_robot_filling_the_hidden_field_is_told_nothing_and_changes_nothing(
    client: TestClient, engine: Engine, smtp_server: SmtpServer
) -> None:
    r = client.post("/subscribe", data={"email": "bot@example.org", "website": "http://spam"})
    assert r.status_code == 200 and "Check your inbox" in r.text
    assert rows(engine, "SELECT count(*) FROM subscriber") == [(0,)]
    assert smtp_server.messages == []


def test_confirm_tokens_expire_after_the_configured_days(
    settings: Settings, engine: Engine, smtp_server: SmtpServer, clock: Clock
) -> None:
    short = settings.model_copy(update={"confirm_token_days": 2})
    with TestClient(create_app(short, engine=engine, clock=clock)) as c:
        c.post("/subscribe", data={"email": "ana@example.org"})
        smtp_server.wait_for(1)
        link = path_of(confirm_link(smtp_server.messages[0]))
        clock.offset += timedelta(days=2, minutes=1)
        expired_get, expired_post = c.get(link), c.post(link)
        assert expired_get.status_code == expired_post.status_code == 404
        assert "This link does not work" in expired_post.text
        assert status_of(engine, "ana@example.org") == ("pending", "web")
        clock.offset -= timedelta(minutes=2)  # just inside two days
        assert c.post(link).status_code == 200
    assert status_of(engine, "ana@example.org") == ("active", "web")
