"""Article pages (news/pages.py): title, date, canonical link and summary from a page shaped like
the seed item, without its navigation, footer or scripts."""

from __future__ import annotations

from datetime import UTC, datetime

from digest.news.pages import extract_page

from .helpers.feeds import SEED_PAGE
from .helpers.newsletter import LONDON


def test_extract_page_shaped_like_the_seed_item() -> None:
    page = extract_page(
        SEED_PAGE.encode(),
        url="https://www.teescpp.example.org/news/item.aspx?id=92&src=rss",
        tz=LONDON,
    )
    assert (
        page.title
        == '"Still at Risk" research finds that more needs to be done to safeguard trafficked children'
    )
    assert page.published == datetime(2013, 9, 11, 23, 0, tzinfo=UTC)  # 12 Sept, London time
    assert page.url == "https://www.teescpp.example.org/news/item.aspx?id=92" and page.canonical
    assert page.summary_html.startswith("<p>Research carried out by The Children’s Society")
    assert "Tees Local Safeguarding" not in page.text and "This page gives" not in page.summary_html
    assert "<script" not in page.summary_html and "alert" not in page.text
