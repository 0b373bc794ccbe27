"""`digest preview` and `digest send` with --note and --featured, the size guard's report, and
bad options, templates and branding settings through the CLI."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from digest.db import make_engine
from digest.models import Issue
from digest.render.fit import GMAIL_CLIP_BYTES

from .helpers.render import (
    LONG,
    write_templates,
)
from .helpers.smtp import SmtpServer


def _items(cli: Callable[..., Any]) -> None:
    for n, (cat, title) in enumerate(
        [("News", "Ceredigion news: Siân Llŷr"), ("Events", "Łódź event")]
    ):
        r = cli("news", "add", "--title", title, "--url", f"https://example.org/x/{n}",
                "--category", cat,
                "--summary", "<p>A summary.</p>", "--published", "2026-11-25")  # fmt: skip
        assert r.exit_code == 0, r.output


def test_cli_preview_with_note_and_featured(
    env: dict[str, str], cli: Callable[..., Any], workdir: Path
) -> None:
    _items(cli)
    (workdir / "note.md").write_text("Hello **readers**.\n", encoding="utf-8")
    r = cli("preview", "--note", "note.md", "--featured", "https://example.org/x/1", "--out", "pv")
    assert r.exit_code == 0, r.output
    assert "Issue 1:" in r.output and "views.html" in r.output
    html = (workdir / "pv" / "digest.html").read_text("utf-8")
    assert "<strong>readers</strong>" in html and "Featured" in html
    assert "unsubscribe/preview" in html
    views = (workdir / "pv" / "views.html").read_text("utf-8")
    assert 'width="375"' in views and 'width="640"' in views


def test_cli_preview_reports_the_size_guard(
    env: dict[str, str], cli: Callable[..., Any], workdir: Path
) -> None:
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    from digest.news.items import ItemInput, upsert_item

    with Session(engine) as session:
        for i in range(200):
            item = ItemInput(
                title=f"Item {i} headline",
                url=f"https://example.org/n/{i}",
                summary=LONG * 2,
                published=datetime.now(UTC) - timedelta(hours=1 + i % 50),
                category="News",
            )
            upsert_item(session, item)
        session.commit()
    engine.dispose()
    r = cli("preview", "--out", "pv")
    assert r.exit_code == 0, r.output
    assert "Size guard:" in r.output and "summaries were shortened to fit" in r.output
    assert "listed by title only" in r.output
    assert len((workdir / "pv" / "digest.html").read_bytes()) < GMAIL_CLIP_BYTES


def test_cli_featured_unknown_is_a_usage_error(
    env: dict[str, str], cli: Callable[..., Any]
) -> None:
    _items(cli)
    r = cli("preview", "--featured", "https://example.org/nope")
    assert r.exit_code == 2
    assert "Error: --featured https://example.org/nope is not one of this issue's items" in r.output


def test_cli_note_missing_file(env: dict[str, str], cli: Callable[..., Any]) -> None:
    r = cli("preview", "--note", "missing.md")
    assert r.exit_code == 2 and "Error: --note: missing.md does not exist" in r.output


def test_cli_broken_template_stops_send_before_anything_is_sent(
    env: dict[str, str], cli: Callable[..., Any], workdir: Path, smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    _items(cli)
    assert cli("subscribers", "add", "ana@example.net").exit_code == 0
    monkeypatch.setenv(
        "DIGEST_TEMPLATES_DIR", write_templates(workdir / "tpl", {"digest.html": "{% if %}\n"})
    )
    r = cli("send", "--yes")
    assert r.exit_code == 1
    assert re.search(r"Error: template .*digest\.html line 1: ", r.output)
    assert "Hint: Fix the template; nothing was sent." in r.output
    assert smtp_server.messages == []
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    with Session(engine) as session:
        assert session.exec(select(Issue)).first() is None  # nothing frozen either
    engine.dispose()


def test_cli_send_freezes_note_and_featured_into_the_issue(
    env: dict[str, str], cli: Callable[..., Any], workdir: Path, smtp_server: SmtpServer
) -> None:
    _items(cli)
    assert cli("subscribers", "add", "ana@example.net").exit_code == 0
    (workdir / "note.md").write_text("A *frozen* note.\n", encoding="utf-8")
    r = cli("send", "--yes", "--note", "note.md", "--featured", "https://example.org/x/0")
    assert r.exit_code == 0, r.output
    assert "Issue 1 is complete." in r.output
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    with Session(engine) as session:
        issue = session.exec(select(Issue)).one()
        assert "<em>frozen</em>" in issue.html and "FEATURED" in issue.text
    engine.dispose()
    body = smtp_server.messages[0].message.get_body(("html",)).get_content()
    assert "<em>frozen</em>" in body


def test_cli_branding_settings_are_validated(
    env: dict[str, str], cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_ACCENT_COLOUR", "purple")
    r = cli("preview")
    assert (
        r.exit_code == 3
        and "setting 'accent_colour'" in r.output
        and "is not a hex colour" in r.output
    )
    monkeypatch.setenv("DIGEST_ACCENT_COLOUR", "#336699")
    monkeypatch.setenv("DIGEST_LOGO_URL", "http://example.org/logo.png")
    r = cli("preview")
    assert (
        r.exit_code == 3 and "setting 'logo_url'" in r.output and "is not an https URL" in r.output
    )


def test_cli_preview_says_what_readers_of_some_topics_get(
    env: dict[str, str], cli: Callable[..., Any], workdir: Path
) -> None:
    """The preview's files show the whole issue; it says which variants the readers' topic
    choices make of it, and who would get none of it, as the send would make them."""
    now = datetime.now(UTC)
    for n, (title, cat) in enumerate(
        [("Neglect toolkit", "Procedures"), ("Course in May", "Training"),
         ("Research briefing", "Research")], 1
    ):  # fmt: skip
        r = cli("news", "add", "--title", title, "--url", f"https://example.org/v/{n}",
                "--category", cat, "--published", (now - timedelta(hours=n)).isoformat())  # fmt: skip
        assert r.exit_code == 0, r.output
    r = cli("news", "add", "--title", "Old audit", "--url", "https://example.org/v/old",
            "--category", "Audit", "--published", (now - timedelta(days=60)).isoformat())  # fmt: skip
    assert r.exit_code == 0, r.output
    for email, topics in [("all@example.net", []), ("train@example.net", ["Training"]),
                          ("two@example.net", ["Training", "Research"]),
                          ("two-b@example.net", ["Research", "Training"]),
                          ("audit@example.net", ["Audit"])]:  # fmt: skip
        r = cli("subscribers", "add", email, *[a for t in topics for a in ("--topic", t)])
        assert r.exit_code == 0, r.output
    r = cli("preview", "--out", str(workdir / "preview"))
    assert r.exit_code == 0, r.output
    assert (
        "Variants for readers' topics: 2\n"
        "  items 2: 1 subscriber\n"
        "  items 2, 3: 2 subscribers\n"
        "  none of their topics: 1 subscriber, not mailed\n"
    ) in r.stdout, r.stdout
    assert "Neglect toolkit" in (workdir / "preview" / "digest.txt").read_text()
