"""An issue too large for Gmail (its HTML over the ~102 KB clipping limit even after the size
guard) is refused before anything is frozen or sent when there is no base_url to leave the
rest to; with one, the rest goes to the web version and the issue is sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from digest.db import make_engine

from .helpers.smtp import SmtpServer
from .helpers.web import rows

ITEMS = 300  # about 125 KB of HTML even as a list of titles


def _many_items(cli: Callable[..., Any]) -> None:
    items = [
        {"title": f"Safeguarding update {i}: a long headline about multi-agency practice reviews",
         "url": f"https://example.org/news/{i}", "summary": "A summary. " * 20,
         "published": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
         "category": f"Section {i % 4}"}
        for i in range(ITEMS)
    ]  # fmt: skip
    Path("many.json").write_text(json.dumps(items), encoding="utf-8")
    assert cli("news", "import", "many.json").exit_code == 0
    assert cli("subscribers", "add", "ana@example.org").exit_code == 0


def test_too_large_without_base_url_is_refused_before_anything_is_frozen(
    cli: Callable[..., Any],
    env: dict[str, str],
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DIGEST_BASE_URL")
    _many_items(cli)
    r = cli("preview")
    assert r.exit_code == 0
    assert "over Gmail's clipping limit (102 KB): `digest send` refuses to send it" in r.stdout
    r = cli("send", "--yes")
    assert r.exit_code == 1, r.output
    assert "Error: issue 1 would be " in r.stderr
    assert f"KB of HTML ({ITEMS} items), over Gmail's clipping limit of about 102 KB" in r.stderr
    assert "Hint: Set base_url" in r.stderr
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    assert rows(engine, "SELECT count(*) FROM issue") == [(0,)]
    assert rows(engine, "SELECT count(*) FROM delivery") == [(0,)]
    engine.dispose()
    assert smtp_server.messages == []


def test_with_base_url_the_rest_goes_to_the_web_version(
    cli: Callable[..., Any], env: dict[str, str], smtp_server: SmtpServer
) -> None:
    _many_items(cli)
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    (message,) = smtp_server.messages
    html = message.message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert len(html.encode()) < 102_000
    assert "https://news.partnership.example.org/archive/1" in html
