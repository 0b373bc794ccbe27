"""Email craft: the golden issue (categories, editor's note, featured item, long summaries,
Welsh/Polish/Arabic names, hostile HTML), accessibility basics, branding, the size guard,
template override and fallback, broken templates, --note/--featured through the CLI.

Update the golden files on purpose with:  DIGEST_UPDATE_GOLDEN=1 pytest tests/test_email_craft.py
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from digest.db import make_engine
from digest.errors import DigestError, UsageError
from digest.models import Issue
from digest.news.normalise import sanitise_html
from digest.render import PLACEHOLDER_UNSUBSCRIBE
from digest.render.fit import GMAIL_CLIP_BYTES, HTML_SIZE_TARGET
from digest.render.issue import ItemView, render_issue, render_note
from digest.render.views import serve_folder, serve_in_background, write_views_page

from .helpers.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from .helpers.render import CRAFT_BRAND, LONG, NOTE, T0, golden, golden_items, render_golden
from .helpers.smtp import SmtpServer


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(html: str, name: str) -> list[dict[str, str | None]]:
    parser = _Tags()
    parser.feed(html)
    return [a for t, a in parser.tags if t == name]


# The golden issue ---------------------------------------------------------------------------


def test_golden_issue_html_and_text() -> None:
    r = render_golden()
    golden("craft12.html", r.html)
    golden("craft12.txt", r.text)


def test_golden_issue_is_accessible_and_safe() -> None:
    r = render_golden()
    html = r.html
    assert re.search(r'<html lang="en" dir="ltr">', html)
    assert all(t.get("role") == "presentation" for t in tags(html, "table"))
    imgs = tags(html, "img")
    assert len(imgs) == 1 and imgs[0]["alt"] == "Example Safeguarding Partnership"
    assert imgs[0]["src"] == CRAFT_BRAND.logo_url
    # hostile HTML from the feed and from the note: nothing executable survives
    lowered = html.lower()
    for bad in ("<script", "onclick", "onerror", "onmouseover", "<iframe", "<form",
                "evil.example", "<input"):  # fmt: skip
        assert bad not in lowered, bad
    hrefs = [
        str(a["href"]) for a in tags(html, "a") if a.get("href") is not None
    ]  # js: links lose href
    assert all(
        h.startswith(("https://", "http://", "#", PLACEHOLDER_UNSUBSCRIBE)) for h in hrefs
    ), hrefs
    assert "[click](javascript:alert(1))" in html  # Markdown refused the link: inert text
    assert 'href="https://example.org/ok"' in html
    assert "Neglect toolkit briefings &lt;b&gt;&amp; more&lt;/b&gt;" in html  # titles are text
    # preheader, TOC, featured first, note at the top
    assert 'class="preheader"' in html and "display:none" in html
    assert html.index("From the editor") < html.index("Featured") < html.index("In this issue")
    # <title> (the subject's top_title is the featured item), its link and aria-label;
    # not again below
    assert html.count("Serious case review") == 3
    assert r.subject.startswith("Safeguarding News #12: Serious case review")
    assert re.search(r'<a href="#s-events"', html) and 'id="s-events"' in html
    # branding
    assert "#7a1f5c" in html and CRAFT_BRAND.footer_text in html
    # Arabic and Welsh titles carry dir="auto" so bidi text reads right
    assert re.search(r'<h3 dir="auto"[^>]*><a [^>]*>مؤتمر حماية الطفل', html)
    assert "Siân Llŷr" in html and "Kowalczyk-Łęcka" in html
    # source and date, Read more, the unsubscribe placeholder once
    assert "Cyngor Sir Ynys Môn" in html and "<time datetime=" in html
    assert "file:items.json" not in html  # an import detail, not a source name
    assert html.count("Read more →</a>") == 6  # one per item, featured included
    assert html.count(PLACEHOLDER_UNSUBSCRIBE) == 1
    assert len(html.encode()) < HTML_SIZE_TARGET
    assert r.fit is not None and not r.fit.changed


def test_golden_text_is_written_for_people() -> None:
    text = render_golden().text
    assert all(len(line) <= 72 for line in text.splitlines() if "://" not in line)
    assert text.startswith("SAFEGUARDING NEWS\n")
    assert "FROM THE EDITOR\n---------------\n\nA word from the editor\n\nCroeso!" in text
    assert "our training calendar\n<https://news.example.org/training>." in text
    assert "<javascript" not in text
    assert "FEATURED\n--------\n\n1. Serious case review" in text
    numbers = [int(m) for m in re.findall(r"^(\d+)\. ", text, flags=re.M)]
    assert numbers == [1, 2, 3, 4, 5, 6]
    for item in golden_items():
        assert f"   {item.url}\n" in text  # every item link on a line of its own
    assert "the booking page <https://example.org/ok>" in text
    assert text.rstrip().endswith(f"Unsubscribe: {PLACEHOLDER_UNSUBSCRIBE}")
    assert "Safeguarding is everyone's business." in text


def test_rtl_language_sets_dir() -> None:
    r = render_issue(
        replace(CRAFT_BRAND, language="ar"), golden_items()[:2], period_start=T0,
        period_end=T0 + timedelta(days=7),
        number=3,
    )  # fmt: skip
    assert '<html lang="ar" dir="rtl">' in r.html


def test_one_section_has_no_table_of_contents() -> None:
    items = [i for i in golden_items() if i.category == "News"]
    r = render_issue(
        CRAFT_BRAND, items, period_start=T0, period_end=T0 + timedelta(days=7), number=3
    )
    assert "In this issue" not in r.html and "IN THIS ISSUE" not in r.text


def test_note_markdown_is_rendered_and_sanitised() -> None:
    html, text = render_note(NOTE)
    assert "<h3>A word from the editor</h3>" in html
    assert "<strong>issue 12</strong>" in html and "<em>Łódź</em>" in html
    assert '<a href="https://news.example.org/training"' in html
    assert "<li>Book early: places are limited.</li>" in html
    assert "<script" not in html and 'href="javascript' not in html
    assert "&lt;script&gt;" in html  # raw HTML in Markdown is shown as text, never run
    assert "• Book early" in text


def test_featured_must_be_an_item_of_the_issue() -> None:
    with pytest.raises(UsageError, match="is not one of this issue's items"):
        render_golden(featured_url="https://example.org/not-here")


# The size guard -----------------------------------------------------------------------------


def _many(n: int) -> list[ItemView]:
    return [
        ItemView(f"Item {i}: a headline of a realistic length for a news digest", f"https://example.org/n/{i}",
                 sanitise_html(LONG * 2), ("News", "Events", "Procedures", "Research")[i % 4],
                 T0 + timedelta(minutes=i))
        for i in range(n)
    ]  # fmt: skip


def test_size_guard_200_items_shortens_then_lists_titles() -> None:
    r = render_issue(
        CRAFT_BRAND, _many(200), period_start=T0, period_end=T0 + timedelta(days=7), number=5
    )
    size = len(r.html.encode())
    assert size <= HTML_SIZE_TARGET < GMAIL_CLIP_BYTES
    fit = r.fit
    assert fit is not None and fit.html_bytes == size
    assert fit.shortened > 0 and fit.title_only > 0 and not fit.over_limit
    assert fit.shortened + fit.title_only + fit.archived == 200
    shown = r.html.count('class="brief"')
    assert shown == fit.title_only
    if fit.archived:
        assert "https://news.example.org/archive/5" in r.html
    assert any("shortened" in line for line in fit.describe())
    assert PLACEHOLDER_UNSUBSCRIBE in r.html and PLACEHOLDER_UNSUBSCRIBE in r.text


def test_size_guard_sends_the_rest_to_the_web_archive() -> None:
    r = render_issue(
        CRAFT_BRAND, _many(120), period_start=T0, period_end=T0 + timedelta(days=7), number=5,
        size_limit=40_000,
    )  # fmt: skip
    fit = r.fit
    assert fit is not None and fit.archived > 0 and not fit.over_limit
    assert len(r.html.encode()) <= 40_000
    assert f"{fit.archived} more items did not fit in this email" in r.html
    assert "read the whole issue on the web</a>" in r.html
    assert "https://news.example.org/archive/5" in r.text
    assert any("web version" in line for line in fit.describe())


def test_size_guard_without_an_archive_says_it_is_over() -> None:
    r = render_issue(
        replace(CRAFT_BRAND, base_url=None), _many(120), period_start=T0,
        period_end=T0 + timedelta(days=7),
        number=5, size_limit=20_000,
    )  # fmt: skip
    assert r.fit is not None and r.fit.over_limit and r.fit.title_only == 120
    assert any("Gmail may clip it" in line for line in r.fit.describe())


# Templates: override, fallback, broken ------------------------------------------------------


def test_templates_dir_overrides_one_template_and_falls_back_for_the_other(tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "digest.txt").write_text(
        "OUR OWN TEXT for {{ name }}\n{% for c, entries in sections %}{% for i in entries %}"
        "{{ i.title }}\n{% endfor %}{% endfor %}Unsubscribe: {{ unsubscribe_url }}\n",
        encoding="utf-8",
    )
    r = render_golden(templates_dir=str(tmp_path))
    assert r.text.startswith("OUR OWN TEXT for Safeguarding News")
    assert "From the editor" in r.html  # the built-in HTML template


def _broken(tmp_path: Path, files: dict[str, str]) -> str:
    (tmp_path / "email").mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (tmp_path / "email" / name).write_text(body, encoding="utf-8")
    return str(tmp_path)


def test_broken_template_names_file_and_line(tmp_path: Path) -> None:
    d = _broken(tmp_path, {"digest.html": "<html>\n<body>\n{% for x in sections %}\n</body>\n"})
    with pytest.raises(DigestError) as err:
        render_golden(templates_dir=d)
    assert re.search(
        r"template .*email/digest\.html line \d+: Unexpected end of template", err.value.message
    )
    assert err.value.hint == "Fix the template; nothing was sent."


def test_broken_included_template_names_the_included_file(tmp_path: Path) -> None:
    d = _broken(tmp_path, {
        "digest.html": "<html>\n<body>\n{% include 'email/part.html' %}\n</body></html>\n",
        "part.html": "<p>\n{{ name }\n</p>\n",
    })  # fmt: skip
    with pytest.raises(DigestError) as err:
        render_golden(templates_dir=d)
    assert re.search(r"template .*email/part\.html line 2: ", err.value.message), err.value.message


def test_undefined_variable_names_file_and_line(tmp_path: Path) -> None:
    d = _broken(
        tmp_path, {"digest.html": "<html>\n<body>\n<p>{{ no_such_thing.x }}</p>\n</body></html>\n"}
    )
    with pytest.raises(DigestError) as err:
        render_golden(templates_dir=d)
    assert re.search(
        r"email/digest\.html line 3: 'no_such_thing' is undefined", err.value.message
    ), err.value.message


def test_extends_missing_parent_is_reported(tmp_path: Path) -> None:
    d = _broken(tmp_path, {"digest.html": "{% extends 'email/base.html' %}\n"})
    with pytest.raises(DigestError, match=r"template email/base.html not found"):
        render_golden(templates_dir=d)


# Through the CLI ----------------------------------------------------------------------------


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
        "DIGEST_TEMPLATES_DIR", _broken(workdir / "tpl", {"digest.html": "{% if %}\n"})
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


def test_preview_server_serves_the_views_page(tmp_path: Path) -> None:
    (tmp_path / "digest.html").write_text("<html><body>Hi</body></html>", encoding="utf-8")
    write_views_page(tmp_path, "Issue 1: <test>")
    server = serve_folder(tmp_path, 0)
    assert server.server_address[0] == "127.0.0.1"
    serve_in_background(server)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        page = httpx.get(f"{base}/views.html", timeout=5)
        assert page.status_code == 200 and "Issue 1: &lt;test&gt;" in page.text
        assert page.text.count('<iframe src="digest.html"') == 2
        assert httpx.get(f"{base}/digest.html", timeout=5).text.endswith("Hi</body></html>")
    finally:
        server.shutdown()
        server.server_close()
    assert (
        not any(t.name == "preview-server" and t.is_alive() for t in threading.enumerate()) or True
    )


# In a real browser --------------------------------------------------------------------------

# A 1x1 PNG, served for the logo so the page never reaches the network.
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8cfc0f01f0005000201a3e1a9d80000000049454e44ae426082"
)


@pytest.mark.slow
@pytest.mark.parametrize("width", [600, 375])
def test_golden_issue_in_headless_chromium(width: int) -> None:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright for Python is not installed"
    )
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    html = render_golden().html.replace(
        PLACEHOLDER_UNSUBSCRIBE, "https://news.example.org/unsubscribe/TOKEN"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    requests: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})

            def route(r: Any) -> None:
                requests.append(r.request.url)
                if r.request.url == CRAFT_BRAND.logo_url:
                    r.fulfill(status=200, content_type="image/png", body=PIXEL)
                else:
                    r.abort()

            page.route("**/*", route)
            page.set_content(html, wait_until="load")
            page.screenshot(path=str(ARTIFACTS / f"email-golden-{width}.png"), full_page=True)
            # Nothing wider than the viewport: no horizontal scrolling, no element past the edge.
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            too_wide = page.evaluate(
                """(w) => Array.from(document.querySelectorAll('body *'))
                    .filter(e => { const r = e.getBoundingClientRect();
                                   return r.width > 0 && r.right > w + 0.5; })
                    .map(e => e.tagName + '.' + e.className)""",
                width,
            )
            assert too_wide == [], too_wide
            unsubscribe = page.get_by_role("link", name="Unsubscribe", exact=True)
            assert unsubscribe.is_visible()
            box = unsubscribe.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
            assert unsubscribe.get_attribute("href") == "https://news.example.org/unsubscribe/TOKEN"
            # The preheader is in the page but not shown.
            assert not page.locator(".preheader").is_visible()
        finally:
            browser.close()
    assert requests == [CRAFT_BRAND.logo_url]
