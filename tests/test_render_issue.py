"""Rendering issue 7 (render/issue.py): the golden HTML and text, and what they contain.

Update the golden files on purpose with:  DIGEST_UPDATE_GOLDEN=1 make test
"""

from __future__ import annotations

from digest.render import PLACEHOLDER_UNSUBSCRIBE

from .helpers.render import golden, render_fixed


def test_golden_html_and_text() -> None:
    rendered = render_fixed()
    golden("issue7.html", rendered.html)
    golden("issue7.txt", rendered.text)


def test_rendered_content() -> None:
    r = render_fixed()
    assert r.subject == "Safeguarding News: 19 – 26 November 2026"
    # grouped by category, newest first
    assert [c for c, _ in r.sections] == ["Procedures", "Training", "Research"]
    html = r.html
    assert '<html lang="en" dir="ltr">' in html
    assert "<script" not in html and "javascript:" not in html and "onclick" not in html
    assert "&lt;partners&gt;" in html  # autoescaped title
    assert 'style="' in html  # CSS inlined
    assert "@media" in html  # media queries kept in <style>
    assert html.count(PLACEHOLDER_UNSUBSCRIBE) == 1
    assert "https://news.example.org/archive/7" in html
    assert "Civic Centre, 1 Market Street" in html
    text = r.text
    assert all(len(line) <= 72 for line in text.splitlines() if "://" not in line)
    assert "https://example.org/news/still-at-risk" in text
    assert "the Children’s Society site\n   <http://www.childrenssociety.org.uk/>." in text
    assert "{{" not in text and "{{" not in html
