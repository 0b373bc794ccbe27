"""Concurrent subscribes of one new address (a double click, a retrying client) never answer
500: threads against a real uvicorn, on SQLite and on PostgreSQL. Each address ends up as one
pending subscriber with one confirmation email."""

from __future__ import annotations

import threading
from collections import Counter

import httpx
import pytest

from digest.config_load import load_settings
from digest.db import make_engine
from digest.web.app import create_app

from .helpers.db import (
    database_url_on_both,  # noqa: F401 (the database_url fixture: both databases)
)
from .helpers.smtp import SmtpServer
from .helpers.web import live_server, rows

ROUNDS, THREADS = 25, 4


def test_concurrent_subscribes_of_one_new_address(
    env: dict[str, str], smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_CONFIRM_LIMIT_PER_CLIENT", "0")  # this test is about races only
    monkeypatch.setenv("DIGEST_CONFIRM_LIMIT_TOTAL", "0")
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    app = create_app(load_settings().settings, engine=engine)
    codes: Counter[int] = Counter()
    lock = threading.Lock()
    with live_server(app) as url:
        for n in range(ROUNDS):
            start = threading.Barrier(THREADS)

            def subscribe(
                address: str = f"same{n}@example.org", start: threading.Barrier = start
            ) -> None:
                start.wait()
                r = httpx.post(f"{url}/subscribe", data={"email": address}, timeout=60)
                with lock:
                    codes[r.status_code] += 1

            threads = [threading.Thread(target=subscribe) for _ in range(THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        smtp_server.wait_for(ROUNDS)
    assert codes == {200: ROUNDS * THREADS}
    assert rows(engine, "SELECT count(*), count(DISTINCT email) FROM subscriber") == [
        (ROUNDS, ROUNDS)
    ]
    assert rows(engine, "SELECT DISTINCT status FROM subscriber") == [("pending",)]
    sent = Counter(r for m in smtp_server.messages for r in m.rcpt_tos)
    assert sent == {f"same{n}@example.org": 1 for n in range(ROUNDS)}
    engine.dispose()
