"""/archive lists and shows only issues someone received or that are being sent: a cancelled
issue nobody received is not a past issue (a real uvicorn; issues made by `digest send`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from digest.config_load import load_settings
from digest.db import make_engine
from digest.web.app import create_app

from .helpers.smtp import SmtpServer
from .helpers.web import live_server, rows


def _item(cli: Callable[..., Any], n: int) -> None:
    published = (datetime.now(UTC) - timedelta(minutes=10 - n)).isoformat()
    r = cli("news", "add", "--title", f"Item {n}", "--url", f"https://example.org/n/{n}",
            "--published", published)  # fmt: skip
    assert r.exit_code == 0, r.output


def test_archive_leaves_out_issues_nobody_received(
    cli: Callable[..., Any], env: dict[str, str], smtp_server: SmtpServer
) -> None:
    for email in ("ana@example.org", "bo@example.org"):
        assert cli("subscribers", "add", email).exit_code == 0
    _item(cli, 1)
    assert cli("send", "--yes").exit_code == 0  # 1: sent to both
    smtp_server.reply = lambda rcpt, data: "451 4.3.0 Try again later"
    _item(cli, 2)
    assert cli("send", "--yes").exit_code == 75  # 2: nobody got it...
    assert cli("issues", "cancel", "2", "--yes").exit_code == 0  # ...and it was cancelled
    smtp_server.reply = lambda rcpt, data: None if rcpt.startswith("ana") else "451 4.3.0 Later"
    _item(cli, 3)
    assert cli("send", "--yes").exit_code == 75  # 3: ana got it, then it was cancelled
    assert cli("issues", "cancel", "3", "--yes").exit_code == 0
    smtp_server.reply = lambda rcpt, data: "451 4.3.0 Try again later"
    _item(cli, 4)
    assert cli("send", "--yes").exit_code == 75  # 4: being sent, nobody has it yet
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    assert rows(engine, "SELECT number, status FROM issue ORDER BY number") == [
        (1, "sent"), (2, "cancelled"), (3, "cancelled"), (4, "sending")
    ]  # fmt: skip
    app = create_app(load_settings().settings, engine=engine)
    with live_server(app) as url, httpx.Client(base_url=url) as http:
        listing = http.get("/archive").text
        for n in (1, 3, 4):
            assert f'href="/archive/{n}"' in listing
            assert http.get(f"/archive/{n}").status_code == 200
        assert 'href="/archive/2"' not in listing
        r = http.get("/archive/2")
        assert r.status_code == 404 and "Item 2" not in r.text
    engine.dispose()
