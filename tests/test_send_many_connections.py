"""More SMTP connections than the database pool holds: every connection's thread asks the
database before MAIL FROM whether its row is still its own, on a connection of its own, so 16
SMTP connections must not run the engine's pool (5 + 10 overflow) dry. Real SQLite and
PostgreSQL, the real CLI, the aiosmtpd server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .helpers.db import postgres_schema
from .helpers.smtp import SmtpServer


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, workdir: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{workdir / 'subscribers.db'}"
        return
    with postgres_schema() as url:
        yield url


def test_sixteen_connections_send_everyone_once(
    env: dict[str, str], cli: Callable[..., Any], smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("DIGEST_SMTP_CONNECTIONS", "16")
    for n in range(60):
        assert cli("subscribers", "add", f"reader{n}@example.net").exit_code == 0
    assert cli("news", "add", "--title", "Pooled", "--url", "https://example.org/p").exit_code == 0
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    assert "Issue 1: 60 sent, 0 failed" in r.stdout
    got = smtp_server.by_rcpt()
    assert len(got) == 60 and all(len(v) == 1 for v in got.values())
