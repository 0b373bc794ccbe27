"""Limits on the confirmation emails the public can make us send (list-bombing: a script
posting many addresses to /subscribe): per client and for everyone together, per hour.
A real uvicorn on loopback; clients told apart by X-Forwarded-For, which uvicorn trusts from
127.0.0.1 (as from the reverse proxy); the clock is the only fake."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.engine import Engine

from digest.config_load import load_settings
from digest.db import make_engine
from digest.web.app import create_app

from .helpers.clock import Clock
from .helpers.smtp import SmtpServer
from .helpers.web import live_server, rows, snapshot


@pytest.fixture
def engine(env: dict[str, str]) -> Iterator[Engine]:
    e = make_engine(env["DIGEST_DATABASE_URL"])
    yield e
    e.dispose()


def _post(http: httpx.Client, address: str, client: str) -> httpx.Response:
    return http.post("/subscribe", data={"email": address}, headers={"X-Forwarded-For": client})


def test_one_client_gets_at_most_its_limit_per_hour(
    env: dict[str, str], engine: Engine, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_CONFIRM_LIMIT_PER_CLIENT", "3")
    clock = Clock()
    app = create_app(load_settings().settings, engine=engine, clock=clock)
    with live_server(app) as url, httpx.Client(base_url=url) as http:
        for n in range(3):
            assert _post(http, f"a{n}@example.org", "203.0.113.5").status_code == 200
        smtp_server.wait_for(3)
        before = snapshot(engine)
        r = _post(http, "a3@example.org", "203.0.113.5")
        assert r.status_code == 429
        assert "Too many sign-ups" in r.text and "try again in 60 minutes" in r.text
        assert 3590 <= int(r.headers["retry-after"]) <= 3600
        assert snapshot(engine) == before  # refused: nothing stored, nothing sent
        # the same IPv6 /64 is one client; another client is not held back
        assert _post(http, "b0@example.org", "2001:db8:1:2::1").status_code == 200
        assert _post(http, "c0@example.org", "198.51.100.7").status_code == 200
        for n in (1, 2):
            assert _post(http, f"b{n}@example.org", f"2001:db8:1:2::{n + 1}").status_code == 200
        assert _post(http, "b3@example.org", "2001:db8:1:2:ffff::9").status_code == 429
        clock.advance(minutes=61)
        assert _post(http, "a3@example.org", "203.0.113.5").status_code == 200
        smtp_server.wait_for(8)
    assert len(smtp_server.messages) == 8


def test_everyone_together_gets_at_most_the_total_per_hour(
    env: dict[str, str], engine: Engine, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_CONFIRM_LIMIT_TOTAL", "5")
    clock = Clock()
    app = create_app(load_settings().settings, engine=engine, clock=clock)
    with live_server(app) as url, httpx.Client(base_url=url) as http:
        codes = [_post(http, f"p{n}@example.org", f"192.0.2.{n}").status_code for n in range(8)]
        assert codes == [200] * 5 + [429] * 3
        r = _post(http, "q@example.org", "192.0.2.99")
        assert "too many sign-up requests to this newsletter" in r.text
        smtp_server.wait_for(5)
        assert rows(engine, "SELECT count(*) FROM subscriber") == [(5,)]
        clock.advance(minutes=30)
        assert _post(http, "r@example.org", "192.0.2.100").status_code == 429
        clock.advance(minutes=31)  # the first five are more than an hour old now
        assert _post(http, "r@example.org", "192.0.2.100").status_code == 200
        smtp_server.wait_for(6)
    assert len(smtp_server.messages) == 6


def test_the_defaults_stop_a_list_bombing_script(
    env: dict[str, str], engine: Engine, smtp_server: SmtpServer
) -> None:
    """200 distinct addresses from one client: ten emails go out, not two hundred."""
    settings = load_settings().settings
    assert (settings.confirm_limit_per_client, settings.confirm_limit_total) == (10, 100)
    app = create_app(settings, engine=engine)
    with live_server(app) as url, httpx.Client(base_url=url) as http:
        codes = [http.post("/subscribe", data={"email": f"victim{n}@example.org"}).status_code
                 for n in range(200)]  # fmt: skip
    smtp_server.wait_for(10)
    assert codes.count(200) == 10 and codes.count(429) == 190
    assert len(smtp_server.messages) == 10
