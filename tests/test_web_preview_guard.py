"""The staff preview password (/preview behind HTTP Basic auth) must be strong, and wrong
guesses are limited: a few per client and not many in all per 15 minutes, then every attempt
gets 429 until the window has passed (a real uvicorn; the clock is the only fake)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.engine import Engine

from digest.config import ConfigError
from digest.config_load import load_settings
from digest.db import make_engine
from digest.web.app import create_app

from .helpers.clock import Clock
from .helpers.web import live_server

PASSWORD = "staff-preview-password-2026"


@pytest.fixture
def engine(env: dict[str, str]) -> Iterator[Engine]:
    e = make_engine(env["DIGEST_DATABASE_URL"])
    yield e
    e.dispose()


@pytest.mark.parametrize("weak", ["hunter2", "aaaaaaaaaaaaaaaaaaaaaaaa", "preview-2026"])
def test_a_weak_password_stops_the_server_at_startup(
    env: dict[str, str], engine: Engine, monkeypatch: pytest.MonkeyPatch, weak: str
) -> None:
    monkeypatch.setenv("DIGEST_PREVIEW_TOKEN", weak)
    with pytest.raises(ConfigError, match="DIGEST_PREVIEW_TOKEN is too weak"):
        create_app(load_settings().settings, engine=engine)


def _get(http: httpx.Client, password: str, client: str) -> httpx.Response:
    return http.get("/preview", auth=("staff", password), headers={"X-Forwarded-For": client})


def test_wrong_guesses_are_limited_per_client_and_in_all(
    env: dict[str, str], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_PREVIEW_TOKEN", PASSWORD)
    clock = Clock()
    app = create_app(load_settings().settings, engine=engine, clock=clock)
    with live_server(app) as url, httpx.Client(base_url=url) as http:
        assert _get(http, PASSWORD, "203.0.113.1").status_code == 200
        assert [_get(http, f"guess{n}", "203.0.113.1").status_code for n in range(5)] == [401] * 5
        locked = _get(http, PASSWORD, "203.0.113.1")  # even the right one, now
        assert locked.status_code == 429 and "Too many wrong passwords" in locked.text
        assert 890 <= int(locked.headers["retry-after"]) <= 900
        assert _get(http, PASSWORD, "198.51.100.2").status_code == 200  # another client
        clock.advance(minutes=16)
        assert _get(http, PASSWORD, "203.0.113.1").status_code == 200
        # a guesser with many addresses: 50 wrong in all, then nobody for the window
        for n in range(50):
            assert _get(http, "nope", f"10.0.{n // 4}.{n % 4 + 1}").status_code == 401
        assert _get(http, PASSWORD, "192.0.2.200").status_code == 429
        clock.advance(minutes=16)
        assert _get(http, PASSWORD, "192.0.2.200").status_code == 200
        # asking without a password is not a guess
        assert http.get("/preview").status_code == 401
