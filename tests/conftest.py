"""Fixtures only (shared code lives in tests/helpers/). Real collaborators for the tests: a
SQLite file per test, an aiosmtpd server on a free loopback port, an HTTP server for feeds,
the web app, the CLI through Typer's runner. Only the clock may be faked."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from digest.cli import app
from digest.config import Settings
from digest.config_load import load_settings
from digest.db import make_engine, upgrade
from digest.web.app import create_app

from .helpers.clock import Clock
from .helpers.newsletter import FROM, SECRET
from .helpers.smtp import SmtpServer, start_smtp


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server, controller = start_smtp()
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean working directory with no DIGEST_* variables from the outside."""
    for name in list(os.environ):
        if name.startswith("DIGEST_") and name != "DIGEST_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def database_url(workdir: Path) -> str:
    """SQLite by default; a module can override this fixture to run on PostgreSQL too."""
    return f"sqlite:///{workdir / 'subscribers.db'}"


@pytest.fixture
def env(
    workdir: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> dict[str, str]:
    """A configured newsletter: database initialised, SMTP pointing at the test server."""
    values = {
        "DIGEST_DATABASE_URL": database_url,
        "DIGEST_SMTP_URL": smtp_server.url,
        "DIGEST_FROM": FROM,
        "DIGEST_BASE_URL": "https://news.partnership.example.org",
        "DIGEST_SECRET_KEY": SECRET,
        "DIGEST_NAME": "Safeguarding News",
        "DIGEST_ORGANISATION": "Example Safeguarding Partnership",
        "DIGEST_POSTAL_ADDRESS": "Civic Centre, Exampletown EX1 2AB",
        # Like a cron run: report temporary failures (exit 75) instead of waiting for retries.
        "DIGEST_RETRY_WAIT_SECONDS": "0",
        "DIGEST_RETRY_BASE_SECONDS": "0.2",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    engine = make_engine(values["DIGEST_DATABASE_URL"])
    upgrade(engine)
    engine.dispose()
    return values


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def cli(runner: CliRunner) -> Callable[..., Any]:
    """Run `digest ARGS…` in-process; returns the result (exit_code, stdout, stderr, output)."""

    def run(*args: str, input: str | None = None) -> Any:
        return runner.invoke(app, list(args), input=input)

    return run


@pytest.fixture
def engine(env: dict[str, str]) -> Iterator[Engine]:
    """An engine on the configured test database."""
    e = make_engine(env["DIGEST_DATABASE_URL"])
    try:
        yield e
    finally:
        e.dispose()


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return load_settings().settings


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(settings: Settings, engine: Engine, clock: Clock) -> Iterator[TestClient]:
    """The web app in-process, on the test database and the fake clock; redirects not followed."""
    with TestClient(create_app(settings, engine=engine, clock=clock), follow_redirects=False) as c:
        yield c


@pytest.fixture(scope="module")
def http_server() -> Iterator[HTTPServer]:
    """A real HTTP server on 127.0.0.1 (threaded, so a stalled handler blocks nobody)."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def http(http_server: HTTPServer) -> Iterator[HTTPServer]:
    """The server with no handlers: each test says what it serves."""
    http_server.clear()
    yield http_server
    http_server.clear()
