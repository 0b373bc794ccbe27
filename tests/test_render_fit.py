"""The size guard (render/fit.py): an issue too big for Gmail is shortened, then listed by
title, then sent to the web archive; without an archive it says it is over."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from digest.news.normalise import sanitise_html
from digest.render import PLACEHOLDER_UNSUBSCRIBE
from digest.render.fit import GMAIL_CLIP_BYTES, HTML_SIZE_TARGET
from digest.render.issue import ItemView, render_issue

from .helpers.render import (
    CRAFT_BRAND,
    LONG,
    T0,
)


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
