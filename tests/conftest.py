"""Real collaborators for the tests: a SQLite file per test, an aiosmtpd server on a free
loopback port, the CLI through Typer's runner. Only the clock may be faked."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from typer.testing import CliRunner

from digest.cli import app
from digest.db import make_engine, upgrade

SECRET = "test-secret-key-0123456789"
FROM = "Safeguarding News <news@partnership.example.org>"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class SmtpServer:
    """A real SMTP server on loopback that records what it accepted.

    `reply` may be set to a function (rcpt, data) -> SMTP reply string or None (accept),
    to script 4xx/5xx answers; `on_data` runs for every message before the reply.
    """

    host: str
    port: int
    messages: list[Received] = field(default_factory=list)
    reply: Callable[[str, bytes], str | None] | None = None
    on_data: Callable[[Received], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def by_rcpt(self) -> dict[str, list[Received]]:
        out: dict[str, list[Received]] = {}
        for m in self.messages:
            for r in m.rcpt_tos:
                out.setdefault(r, []).append(m)
        return out

    def wait_for(self, n: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.01)


class RecordingHandler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, srv: Any, session: Any, envelope: Any) -> str:
        rec = Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        if self.server.on_data:
            self.server.on_data(rec)
        if self.server.reply:
            answer = self.server.reply(rec.rcpt_tos[0], rec.data)
            if answer:
                return answer
        with self.server.lock:
            self.server.messages.append(rec)
        return "250 2.0.0 OK queued"


def start_smtp(**controller_kw: Any) -> tuple[SmtpServer, Controller]:
    server = SmtpServer("127.0.0.1", free_port())
    controller = Controller(
        RecordingHandler(server), hostname=server.host, port=server.port, **controller_kw
    )
    controller.start()
    return server, controller


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


PG_URL = os.environ.get("DIGEST_TEST_POSTGRES_URL")


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A database URL whose tables live in a fresh PostgreSQL schema, dropped afterwards."""
    if not PG_URL:
        pytest.skip("set DIGEST_TEST_POSTGRES_URL to run the PostgreSQL tests")
    import secrets

    import sqlalchemy as sa

    schema = f"t_{secrets.token_hex(6)}"
    admin = make_engine(PG_URL)
    with admin.begin() as c:
        c.execute(sa.text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as c:
            c.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


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
