"""Unsubscribing on the web: RFC 8058 one-click exactly as mail clients POST it, the visible
link's page and button, bad tokens that change nothing, and an unsubscribe during a send."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from digest.config import Settings
from digest.models import utcnow
from digest.tokens import make_timed_token, make_token
from digest.web.app import create_app

from .helpers.newsletter import SECRET
from .helpers.seed import seed_issue
from .helpers.smtp import SmtpServer
from .helpers.web import (
    BASE,
    events_of,
    live_server,
    main_text,
    path_of,
    rows,
    snapshot,
    status_of,
    uid_of,
    unsubscribe_path,
)


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
