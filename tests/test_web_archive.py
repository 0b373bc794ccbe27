"""The web archive of sent issues (web/archive.py), without anyone's token, and the staff preview
(password or loopback only)."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from digest.config import Settings
from digest.render import PLACEHOLDER_UNSUBSCRIBE
from digest.web.app import create_app

from .helpers.seed import seed_issue
from .helpers.smtp import SmtpServer
from .helpers.web import (
    BASE,
    rows,
)


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
