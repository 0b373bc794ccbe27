"""The web app (web/app.py): security headers and no script on every page, the form without
JavaScript, the health check, base_url required; routes through TestClient, and a real uvicorn
server on loopback.

Real collaborators throughout: a SQLite file per test, the aiosmtpd server from conftest for
confirmation emails and issues, the CLI for setting up. Only the clock is replaced.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from digest.config import Settings
from digest.web.app import create_app

from .helpers.smtp import SmtpServer
from .helpers.web import (
    confirm_link,
    live_server,
    path_of,
    status_of,
    unsubscribe_path,
)


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
