"""Test copies whose links work (send/safe.py, send/review.py, web/archive.py): `send --to`
with no new items copies the last issue; a copy of the next issue or of a draft links to its
/review/TOKEN page, which a real web server shows; the unsubscribe link of a test copy says it
is a test copy (and changes nothing, GET or one-click POST), over real HTTP."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from digest.config import Settings
from digest.web.app import create_app

from .helpers.db import rows
from .helpers.seed import seed_issue
from .helpers.smtp import Received, SmtpServer
from .helpers.web import BASE, live_server, path_of, snapshot


def _links(message: Received) -> tuple[str, str]:
    """(view online, unsubscribe) of a received copy, from its plain-text part."""
    text = message.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    online = re.search(r"View in your browser: (\S+)", text)
    unsubscribe = re.search(rf"{re.escape(BASE)}/unsubscribe/\S+", text)
    assert online and unsubscribe, text
    return online.group(1), unsubscribe.group(0)


def _get(url: str, data: bytes | None = None) -> tuple[int, str]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if data else {}
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_test_copy_with_no_new_items_is_the_last_issue_and_its_links_work(
    cli: Callable[..., Any], settings: Settings, engine: Engine, smtp_server: SmtpServer
) -> None:
    seed_issue(cli, ["ana@example.org", "ben@example.org"])
    assert cli("send", "--yes").exit_code == 0
    r = cli("send", "--to", "me@example.org")
    assert r.exit_code == 0, r.output
    assert "A copy of issue 1, the last issue (there are no new items)." in r.stdout
    assert "Test copy to me@example.org: sent (250" in r.stdout
    copy = smtp_server.messages[-1]
    assert copy.rcpt_tos == ["me@example.org"]
    assert copy.message["Subject"].startswith("[TEST] Safeguarding News")
    online, unsubscribe = _links(copy)
    assert online == f"{BASE}/archive/1"  # it was sent: its public web version
    assert unsubscribe == f"{BASE}/unsubscribe/test-copy"
    before = snapshot(engine)
    with live_server(create_app(settings, engine=engine)) as url:
        status, page = _get(url + path_of(online))
        assert status == 200 and "Item 0" in page
        status, page = _get(url + path_of(unsubscribe))
        assert status == 200 and "This is a test copy" in page
        assert "This link does not work" not in page and "Nothing has been changed." in page
        status, page = _get(url + path_of(unsubscribe), b"List-Unsubscribe=One-Click")
        assert status == 200 and "This is a test copy" in page
    assert snapshot(engine) == before
    assert rows(engine, "SELECT count(*) FROM issue") == [(1,)]


def test_test_copy_of_the_next_issue_links_to_a_page_the_server_shows(
    cli: Callable[..., Any], settings: Settings, engine: Engine, smtp_server: SmtpServer
) -> None:
    seed_issue(cli, ["ana@example.org"])
    r = cli("send", "--to", "me@example.org")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("Test copy to me@example.org: sent")  # as before: the next issue
    online, _ = _links(smtp_server.messages[0])
    assert online.startswith(f"{BASE}/review/") and "/archive/" not in online
    html = smtp_server.messages[0].message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "/archive/1" not in html
    with live_server(create_app(settings, engine=engine)) as url:
        status, page = _get(url + path_of(online))
    assert status == 200
    assert "Staff preview: issue 1 as the next send would make it" in page and "Item 1" in page
    assert rows(engine, "SELECT count(*) FROM issue") == [(0,)]


def test_test_copy_of_a_draft_and_its_review_page(
    cli: Callable[..., Any],
    settings: Settings,
    engine: Engine,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DIGEST_REVIEW", "required")
    monkeypatch.setenv("DIGEST_REVIEW_TO", "comms@partnership.example.org")
    seed_issue(cli, ["ana@example.org"])
    assert cli("send", "--scheduled").exit_code == 0
    cli("news", "add", "--title", "Newer", "--url", "https://example.org/newer")
    r = cli("send", "--to", "me@example.org")
    assert r.exit_code == 0, r.output
    assert "A copy of issue 1 (draft)." in r.stdout
    body = smtp_server.messages[-1].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Item 0" in body and "Newer" not in body  # the draft, not what came since
    online, _ = _links(smtp_server.messages[-1])
    with live_server(create_app(settings, engine=engine)) as url:
        status, page = _get(url + path_of(online))
        assert status == 200
        assert "Review copy: issue 1, draft, review copy sent" in page and "Item 0" in page
        assert "not sent to subscribers yet" in page
        # the archive does not show a draft
        assert _get(url + "/archive/1")[0] == 404
        # a tampered link is the one bad-link page
        status, page = _get(url + path_of(online)[:-2] + "xx")
        assert status == 404 and "This link does not work" in page


def test_review_links_expire_and_are_kept_from_robots_and_logs(
    cli: Callable[..., Any], client: TestClient, clock: Any, smtp_server: SmtpServer
) -> None:
    seed_issue(cli, ["ana@example.org"])
    assert cli("send", "--to", "me@example.org").exit_code == 0
    online, _ = _links(smtp_server.messages[0])
    r = client.get(path_of(online))
    assert r.status_code == 200 and r.headers["x-robots-tag"] == "noindex"
    clock.advance(days=15)
    assert client.get(path_of(online)).status_code == 404
    assert "Disallow: /review/" in client.get("/robots.txt").text


def test_the_access_log_hides_review_tokens() -> None:
    import logging

    from digest.web.app import RedactTokens

    path = "/review/abcdef12_0123456789abcdef_xyz_signature"
    record = logging.LogRecord("uvicorn.access", 20, "", 0, "%s", (f"GET {path}",), None)
    RedactTokens().filter(record)
    assert record.args == ("GET /review/…",)


def test_test_copy_with_nothing_at_all(cli: Callable[..., Any], env, smtp_server) -> None:
    r = cli("send", "--to", "me@example.org")
    assert r.exit_code == 0
    assert "No new items for the next issue; nothing to send." in r.stdout
    assert smtp_server.messages == []
