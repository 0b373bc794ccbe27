"""The consent log records what the README says: for every status change its time, status,
source and what happened; for web actions, when the organisation turns it on
(consent_client = "network"), a coarse marker of the client (its /24 or /48 network)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from digest.config_load import load_settings
from digest.db import make_engine
from digest.tokens import make_token
from digest.web.app import create_app

from .helpers.newsletter import SECRET
from .helpers.smtp import SmtpServer
from .helpers.web import confirm_link, live_server, path_of, rows


def _log(engine: Engine) -> list[tuple[Any, ...]]:
    return rows(
        engine,
        "SELECT e.at, e.status, e.source, e.detail, e.client FROM subscriber_event e "
        "JOIN subscriber s ON s.id = e.subscriber_id WHERE s.email = 'ana@example.org' "
        "ORDER BY e.id",
    )


def _subscribe_confirm_unsubscribe(
    smtp_server: SmtpServer, env: dict[str, str], headers: dict[str, str]
) -> list[tuple[Any, ...]]:
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    app = create_app(load_settings().settings, engine=engine)
    with live_server(app) as url, httpx.Client(base_url=url, headers=headers) as http:
        assert http.post("/subscribe", data={"email": "ana@example.org"}).status_code == 200
        smtp_server.wait_for(1)
        assert http.post(path_of(confirm_link(smtp_server.messages[0]))).status_code == 200
        uid = rows(engine, "SELECT uid FROM subscriber")[0][0]
        token = make_token(SECRET.encode(), "unsubscribe", uid)
        r = http.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200
    log = _log(engine)
    engine.dispose()
    return log


def test_off_by_default_the_log_has_time_status_source_and_detail(
    smtp_server: SmtpServer, env: dict[str, str]
) -> None:
    log = _subscribe_confirm_unsubscribe(smtp_server, env, {})
    assert [row[1:] for row in log] == [
        ("pending", "web", "added", ""),
        ("pending", "web", "confirmation sent", ""),
        ("active", "web", "confirmed by email link", ""),
        ("unsubscribed", "one-click", "unsubscribe link", ""),
    ]
    assert all(isinstance(row[0], datetime) or row[0] for row in log)


@pytest.mark.parametrize(
    ("forwarded", "marker"),
    [(None, "127.0.0.0/24"), ("203.0.113.77", "203.0.113.0/24"),
     ("2001:db8:1234:5678::1", "2001:db8:1234::/48")],
)  # fmt: skip
def test_network_marker_for_web_actions(
    smtp_server: SmtpServer,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    forwarded: str | None,
    marker: str,
) -> None:
    """Behind the proxy (X-Forwarded-For from 127.0.0.1, which uvicorn trusts) the marker is
    the visitor's network; never the full address."""
    monkeypatch.setenv("DIGEST_CONSENT_CLIENT", "network")
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    log = _subscribe_confirm_unsubscribe(smtp_server, env, headers)
    assert [(row[3], row[4]) for row in log] == [
        ("added", marker),
        ("confirmation sent", marker),
        ("confirmed by email link", marker),
        ("unsubscribe link", marker),
    ]
    if forwarded:
        assert all(forwarded not in str(row) for row in log)


def test_cli_actions_record_no_client(cli: Callable[..., Any], env: dict[str, str]) -> None:
    assert cli("subscribers", "add", "ana@example.org").exit_code == 0
    assert cli("subscribers", "unsubscribe", "ana@example.org").exit_code == 0
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    assert [row[1:] for row in _log(engine)] == [
        ("active", "cli", "added", ""),
        ("unsubscribed", "cli", "unsubscribed by staff", ""),
    ]
    engine.dispose()
