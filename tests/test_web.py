"""The public web endpoints: routes through TestClient, and a real uvicorn server on loopback.

Real collaborators throughout: a SQLite file per test, the aiosmtpd server from conftest for
confirmation emails and issues, the CLI for setting up. Only the clock is replaced.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from digest.config import Settings, load_settings
from digest.db import make_engine
from digest.demo import free_port
from digest.models import utcnow
from digest.render import PLACEHOLDER_UNSUBSCRIBE
from digest.tokens import make_timed_token, make_token
from digest.web.app import create_app

from .helpers.newsletter import SECRET
from .helpers.smtp import SmtpServer
from .helpers.web import confirm_link, live_server, path_of, rows, snapshot

BASE = "https://news.partnership.example.org"


class Clock:
    """The only fake: the real time plus whatever the test moves it by."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return load_settings().settings


@pytest.fixture
def engine(env: dict[str, str]) -> Iterator[Engine]:
    e = make_engine(env["DIGEST_DATABASE_URL"])
    yield e
    e.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(settings: Settings, engine: Engine, clock: Clock) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine=engine, clock=clock), follow_redirects=False) as c:
        yield c


def uid_of(engine: Engine, email: str) -> str:
    return str(
        rows(engine, "SELECT uid FROM subscriber WHERE lower(email) = lower(:e)", e=email)[0][0]
    )


def status_of(engine: Engine, email: str) -> tuple[Any, ...]:
    return rows(
        engine,
        "SELECT status, status_source FROM subscriber WHERE lower(email) = lower(:e)",
        e=email,
    )[0]


def events_of(engine: Engine, email: str) -> list[tuple[Any, ...]]:
    return rows(
        engine,
        "SELECT e.status, e.source, e.detail FROM subscriber_event e "
        "JOIN subscriber s ON s.id = e.subscriber_id "
        "WHERE lower(s.email) = lower(:e) ORDER BY e.id",
        e=email,
    )


def unsubscribe_path(engine: Engine, email: str) -> str:
    return f"/unsubscribe/{make_token(SECRET.encode(), 'unsubscribe', uid_of(engine, email))}"


def seed_issue(cli: Callable[..., Any], emails: list[str], items: int = 2) -> None:
    now = datetime.now(UTC)
    for email in emails:
        r = cli("subscribers", "add", email)
        assert r.exit_code == 0, r.output
    for i in range(items):
        r = cli("news", "add", "--title", f"Item {i}", "--url", f"https://example.org/n/{i}",
                "--summary", f"<p>Summary {i}</p>", "--published",
                (now - timedelta(hours=i + 1)).isoformat())  # fmt: skip
        assert r.exit_code == 0, r.output


def main_text(html: str) -> str:
    return html[html.index("<main>") : html.index("</main>")]


# Pages and headers --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/subscribe", "/archive", "/unsubscribe", "/nope"])
def test_pages_have_security_headers_and_no_script(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == (404 if path == "/nope" else 200)
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert "script-src" not in csp  # no script source at all: default-src 'none' applies
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "<script" not in r.text.lower()
    assert '<link rel="stylesheet" href="/static/web.css">' in r.text
    assert '<html lang="en"' in r.text


def test_subscribe_form_posts_without_javascript(client: TestClient) -> None:
    r = client.get("/subscribe")
    assert '<form method="post" action="/subscribe">' in r.text
    assert 'type="email" id="email" name="email"' in r.text and '<button type="submit">' in r.text
    css = client.get("/static/web.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "#1f3a5f" in css.text  # the email's masthead colour
    assert client.get("/robots.txt").text.startswith("User-agent: *")
    assert client.head("/subscribe").status_code == 200


def test_healthz(client: TestClient, settings: Settings, tmp_path: Any) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    missing = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'none.db'}"})
    with TestClient(create_app(missing)) as c:
        r = c.get("/healthz")
    assert r.status_code == 503 and r.json() == {"status": "unavailable"}


def test_app_needs_base_url(settings: Settings) -> None:
    from digest.errors import ConfigError

    with pytest.raises(ConfigError, match="base_url is not set"):
        create_app(settings.model_copy(update={"base_url": None}))


# Double opt-in -------------------------------------------------------------------------------


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


# Unsubscribe ---------------------------------------------------------------------------------


def test_one_click_post_exactly_as_mail_clients_send_it(
    cli: Callable[..., Any], settings: Settings, engine: Engine, smtp_server: SmtpServer
) -> None:
    seed_issue(cli, ["ana@example.org", "ben@example.org"])
    assert cli("send", "--yes").exit_code == 0
    msg = smtp_server.by_rcpt()["ana@example.org"][0].message
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https_link = re.match(r"<(https://[^>]+)>", msg["List-Unsubscribe"]).group(1)  # type: ignore[union-attr]
    assert https_link.startswith(f"{BASE}/unsubscribe/")
    # A fresh client: no cookies, no earlier visit, no redirects followed.
    with TestClient(create_app(settings, engine=engine), follow_redirects=False) as mail_client:
        assert not mail_client.cookies
        r = mail_client.post(
            path_of(https_link),
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 200
        assert "location" not in r.headers and "set-cookie" not in r.headers
        assert "You are unsubscribed" in r.text
        assert status_of(engine, "ana@example.org") == ("unsubscribed", "one-click")
        assert status_of(engine, "ben@example.org") == ("active", "cli")
        # Repeated POSTs (clients retry) answer the same and log nothing new.
        n_events = len(events_of(engine, "ana@example.org"))
        again = mail_client.post(
            path_of(https_link),
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert again.status_code == 200 and again.text == r.text
        assert len(events_of(engine, "ana@example.org")) == n_events
        # RFC 8058 also allows multipart/form-data.
        ben = path_of(
            re.match(
                r"<([^>]+)>",
                smtp_server.by_rcpt()["ben@example.org"][0].message["List-Unsubscribe"],
            ).group(1)
        )  # type: ignore[union-attr]
        r = mail_client.post(ben, files={"List-Unsubscribe": (None, "One-Click")})
        assert r.status_code == 200
        assert status_of(engine, "ben@example.org") == ("unsubscribed", "one-click")
    assert events_of(engine, "ana@example.org")[-1] == (
        "unsubscribed",
        "one-click",
        "unsubscribe link",
    )


def test_the_visible_link_shows_a_button_and_only_the_button_unsubscribes(
    cli: Callable[..., Any], client: TestClient, engine: Engine
) -> None:
    cli("subscribers", "add", "ana@example.org")
    path = unsubscribe_path(engine, "ana@example.org")
    before = snapshot(engine)
    for _ in range(3):  # a mail scanner, a link preview, the person
        page = client.get(path)
        assert page.status_code == 200
        assert client.head(path).status_code == 200
    assert f'<form method="post" action="{path}">' in page.text
    assert '<meta name="robots" content="noindex, nofollow">' in page.text
    assert snapshot(engine) == before
    r = client.post(path)  # the button: an empty form
    assert r.status_code == 200
    assert status_of(engine, "ana@example.org") == ("unsubscribed", "web")
    assert 'href="/subscribe"' in main_text(r.text)  # the resubscribe link


def test_unsubscribe_of_someone_erased_since_is_a_quiet_success(
    cli: Callable[..., Any], client: TestClient, engine: Engine
) -> None:
    cli("subscribers", "add", "ana@example.org")
    path = unsubscribe_path(engine, "ana@example.org")
    cli("subscribers", "remove", "ana@example.org", "--yes")
    before = snapshot(engine)
    r = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200 and "You are unsubscribed" in r.text
    assert snapshot(engine) == before


def _bad_tokens(engine: Engine) -> dict[str, tuple[str, str]]:
    """(path, method) for every kind of bad link, against a pending and an active subscriber."""
    key = SECRET.encode()
    act, pend = uid_of(engine, "active@example.org"), uid_of(engine, "pending@example.org")
    unsub = make_token(key, "unsubscribe", act)
    conf = make_timed_token(key, "confirm", pend, now=utcnow())
    old = make_timed_token(key, "confirm", pend, now=utcnow() - timedelta(days=8))
    flip = {"A": "B"}.get(unsub[-1], "A")
    return {
        "unsubscribe tampered": (f"/unsubscribe/{unsub[:-1]}{flip}", ""),
        "unsubscribe truncated": (f"/unsubscribe/{unsub[:-4]}", ""),
        "unsubscribe no signature": (f"/unsubscribe/{act}", ""),
        "unsubscribe other person": (
            f"/unsubscribe/{unsub.split('_')[0]}_{pend}_{unsub.split('_', 2)[2]}",
            "",
        ),
        "unsubscribe foreign key": (f"/unsubscribe/{make_token(b'other', 'unsubscribe', act)}", ""),
        "unsubscribe with a confirm token": (f"/unsubscribe/{conf}", ""),
        "unsubscribe test copy": ("/unsubscribe/test-copy", ""),
        "confirm tampered": (f"/confirm/{conf[:-1]}{'A' if conf[-1] != 'A' else 'B'}", ""),
        "confirm truncated": (f"/confirm/{conf[:40]}", ""),
        "confirm expired": (f"/confirm/{old}", ""),
        "confirm with an unsubscribe token": (
            f"/confirm/{make_token(key, 'unsubscribe', pend)}",
            "",
        ),
        "confirm with a later date": (
            f"/confirm/{'_'.join(conf.split('_', 3)[:2])}_zzzzzz_{conf.split('_', 3)[3]}",
            "",
        ),
        "confirm foreign key": (
            f"/confirm/{make_timed_token(b'other', 'confirm', pend, now=utcnow())}",
            "",
        ),
        "confirm empty": ("/confirm", ""),
    }


def test_bad_tokens_get_the_same_page_and_change_nothing(
    cli: Callable[..., Any], client: TestClient, engine: Engine
) -> None:
    cli("subscribers", "add", "active@example.org")
    cli("subscribers", "add", "pending@example.org", "--status", "pending")
    reference = client.get("/confirm/nonsense")
    assert reference.status_code == 404 and "This link does not work" in reference.text
    before = snapshot(engine)
    for label, (path, _) in _bad_tokens(engine).items():
        for method in ("GET", "POST"):
            kw: dict[str, Any] = {}
            if method == "POST":
                kw = {"content": b"List-Unsubscribe=One-Click",
                      "headers": {"Content-Type": "application/x-www-form-urlencoded"}}  # fmt: skip
            r = client.request(method, path, **kw)
            assert (r.status_code, r.text) == (404, reference.text), (label, method)
    assert snapshot(engine) == before
    # The good tokens still work afterwards.
    assert client.post(unsubscribe_path(engine, "active@example.org")).status_code == 200


def test_unsubscribe_via_the_web_during_a_send_is_honoured(
    cli: Callable[..., Any], settings: Settings, engine: Engine, smtp_server: SmtpServer
) -> None:
    """reader2's delivery is claimed in the same batch as reader0's; they unsubscribe (one-click,
    over real HTTP) while reader0's message is being accepted, and are not sent the issue."""
    readers = [f"reader{i}@example.net" for i in range(4)]
    seed_issue(cli, readers)
    link = unsubscribe_path(engine, "reader2@example.net")
    with live_server(create_app(settings, engine=engine)) as url:
        answers = []

        def on_data(rec: Any) -> None:
            if rec.rcpt_tos == ["reader0@example.net"]:
                answers.append(httpx.post(url + link, data={"List-Unsubscribe": "One-Click"}))

        smtp_server.on_data = on_data
        r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    assert [a.status_code for a in answers] == [200]
    assert sorted(smtp_server.by_rcpt()) == [
        "reader0@example.net",
        "reader1@example.net",
        "reader3@example.net",
    ]
    assert "0 failed, 0 deferred, 1 skipped" in r.stdout
    assert rows(
        engine,
        "SELECT s.email, d.status, d.last_reply FROM delivery d JOIN subscriber s "
        "ON s.id = d.subscriber_id WHERE d.status = 'skipped'",
    ) == [("reader2@example.net", "skipped", "subscriber unsubscribed")]


# Archive and preview -------------------------------------------------------------------------


def test_archive_shows_sent_issues_without_anyones_token(
    cli: Callable[..., Any], client: TestClient, engine: Engine, smtp_server: SmtpServer
) -> None:
    assert "No issue has been sent yet" in client.get("/archive").text
    seed_issue(cli, ["ana@example.org", "ben@example.org"])
    assert cli("send", "--yes").exit_code == 0
    listing = client.get("/archive")
    assert listing.status_code == 200 and 'href="/archive/1"' in listing.text
    assert "public" in listing.headers["cache-control"]
    # The email's "view in browser" link leads here.
    html = smtp_server.messages[0].message.get_body(("html",)).get_content()
    assert f'href="{BASE}/archive/1"' in html
    page = client.get("/archive/1")
    assert page.status_code == 200
    assert "Item 0" in page.text and "Item 1" in page.text
    assert PLACEHOLDER_UNSUBSCRIBE not in page.text
    assert 'href="/unsubscribe"' in page.text  # the neutral how-to page
    assert not re.search(r"/unsubscribe/[A-Za-z0-9]", page.text)
    for (uid,) in rows(engine, "SELECT uid FROM subscriber"):
        assert uid not in page.text
    assert 'href="/archive"' in page.text  # back to the list
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script" not in csp
    assert client.get("/archive/2").status_code == 404
    assert client.get("/archive/abc").status_code == 404


def test_preview_is_off_unless_enabled(cli: Callable[..., Any], client: TestClient) -> None:
    seed_issue(cli, ["ana@example.org"])
    r = client.get("/preview")
    assert r.status_code == 404


def test_preview_with_a_staff_password(
    cli: Callable[..., Any], settings: Settings, engine: Engine
) -> None:
    seed_issue(cli, ["ana@example.org"])
    staff = settings.model_copy(update={"preview_token": "s3cret-preview-of-staff"})
    with TestClient(create_app(staff, engine=engine)) as c:
        r = c.get("/preview")
        assert (
            r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="digest preview"'
        )
        assert c.get("/preview", auth=("staff", "wrong")).status_code == 401
        ok = c.get("/preview", auth=("staff", "s3cret-preview-of-staff"))
        assert ok.status_code == 200
        assert "Staff preview: issue 1" in ok.text and "Item 0" in ok.text
        assert PLACEHOLDER_UNSUBSCRIBE not in ok.text
        bad = base64.b64encode(b"\xff\xfe").decode()
        assert c.get("/preview", headers={"Authorization": f"Basic {bad}"}).status_code == 401
    assert rows(engine, "SELECT count(*) FROM issue") == [(0,)]  # a preview stores nothing


def test_preview_from_loopback_only_when_not_forwarded(
    cli: Callable[..., Any], settings: Settings, engine: Engine
) -> None:
    local = settings.model_copy(update={"preview_loopback": True})
    app = create_app(local, engine=engine)
    with TestClient(app, client=("127.0.0.1", 50000)) as c:
        r = c.get("/preview")
        assert r.status_code == 200 and "Nothing to preview" in r.text
        assert c.get("/preview", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 404
    with TestClient(app, client=("192.0.2.10", 50000)) as c:
        assert c.get("/preview").status_code == 404


# A real server ---------------------------------------------------------------------------------


def test_against_a_real_uvicorn_server(
    settings: Settings, engine: Engine, smtp_server: SmtpServer
) -> None:
    app = create_app(settings, engine=engine)
    with live_server(app) as url, httpx.Client(base_url=url, follow_redirects=False) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        r = http.post("/subscribe", data={"email": "ana@example.org", "name": "Ana"})
        assert r.status_code == 200 and r.headers["x-frame-options"] == "DENY"
        smtp_server.wait_for(1)
        link = path_of(confirm_link(smtp_server.messages[0]))
        assert http.get(link).status_code == 200
        assert http.post(link).status_code == 200
        assert status_of(engine, "ana@example.org") == ("active", "web")
        unsub = unsubscribe_path(engine, "ana@example.org")
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        r = http.post(unsub, content=b"List-Unsubscribe=One-Click", headers=form)
        assert r.status_code == 200 and not r.cookies
        assert status_of(engine, "ana@example.org") == ("unsubscribed", "one-click")


def _wait_for(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.slow
def test_digest_serve_honours_every_list_unsubscribe_link(
    cli: Callable[..., Any], engine: Engine, smtp_server: SmtpServer
) -> None:
    """`digest serve` as a real process; each message's List-Unsubscribe https link, as a
    reverse proxy would pass it on, one-click POSTed with urllib (no cookies, no redirects)."""
    readers = [f"reader{i}@example.net" for i in range(3)]
    seed_issue(cli, readers)
    assert cli("send", "--yes").exit_code == 0
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _wait_for(f"http://127.0.0.1:{port}/healthz")
        for reader in readers:
            msg = smtp_server.by_rcpt()[reader][0].message
            link = re.match(r"<(https://[^>]+)>", msg["List-Unsubscribe"]).group(1)  # type: ignore[union-attr]
            # The visible link in the body is the same link.
            assert f'href="{link}"' in msg.get_body(("html",)).get_content()
            local = f"http://127.0.0.1:{port}{urlsplit(link).path}"
            req = urllib.request.Request(
                local, data=b"List-Unsubscribe=One-Click", method="POST",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )  # fmt: skip
            with urllib.request.urlopen(req, timeout=10) as r:
                assert r.status == 200 and r.url == local  # answered, not redirected
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/archive/1", timeout=10) as r:
            assert b"Item 0" in r.read()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert f"Serving Safeguarding News on http://127.0.0.1:{port}" in out.decode()
    # The access log names the route but never the token.
    log = out + err
    assert "POST /unsubscribe/… HTTP/1.1".encode() in log
    assert not re.search(rb"/unsubscribe/[0-9a-f]{32}\.", log)
    assert (
        rows(engine, "SELECT status, status_source FROM subscriber")
        == [("unsubscribed", "one-click")] * 3
    )


def test_serve_reports_a_busy_port(cli: Callable[..., Any], env: dict[str, str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = cli("serve", "--port", str(port))
    assert r.exit_code == 1
    assert f"Error: cannot listen on 127.0.0.1:{port}" in r.stderr
    assert "Hint: Choose another --port" in r.stderr


def test_serve_needs_base_url(
    cli: Callable[..., Any], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DIGEST_BASE_URL")
    r = cli("serve")
    assert r.exit_code == 3
    assert "Error: base_url is not set" in r.stderr and "DIGEST_BASE_URL" in r.stderr
