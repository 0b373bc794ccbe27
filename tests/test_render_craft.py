"""Email craft (render/issue.py): the golden issue 12 (categories, editor's note, featured item,
long summaries, Welsh/Polish/Arabic names, hostile HTML), accessibility basics, branding, the
text part written for people, right-to-left languages, the note's Markdown.

Update the golden files on purpose with:  DIGEST_UPDATE_GOLDEN=1 make test
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from html.parser import HTMLParser

import pytest

from digest.errors import UsageError
from digest.render import PLACEHOLDER_PREFERENCES, PLACEHOLDER_UNSUBSCRIBE
from digest.render.fit import HTML_SIZE_TARGET
from digest.render.issue import render_issue, render_note

from .helpers.render import (
    CRAFT_BRAND,
    NOTE,
    T0,
    golden,
    golden_items,
    render_golden,
)


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
        h.startswith(("https://", "http://", "#", PLACEHOLDER_UNSUBSCRIBE, PLACEHOLDER_PREFERENCES))
        for h in hrefs
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
