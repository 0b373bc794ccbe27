"""Feeds (news/feeds.py, news/normalise.py): RSS 2.0, Atom and RSS 1.0 served by a real HTTP
server on loopback, normalised and stored; relative links, hostile HTML, other encodings,
malformed XML, entries without a title or link, shared links, future dates; an entity bomb, an
HTML page and garbage are refused.

Nothing here reaches beyond 127.0.0.1; failures are real (a 500, a server that does not
answer, a port nobody listens on), never mocked.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy.engine import Engine

from digest.news.feeds import FeedError, parse_feed

from .helpers.feeds import (
    ATOM,
    BOMB,
    HOSTILE,
    HTML_PAGE,
    MALFORMED,
    RELATIVE,
    RSS,
    RSS10,
    RSS20,
    add,
    fetch,
    item,
    items,
    rss,
    serve,
    source,
)


def test_rss20_items_are_normalised_and_stored(http: HTTPServer, engine: Engine) -> None:
    url = serve(http, "/rss.xml", RSS20)
    result = add(engine, url, category="Procedures")
    assert (result.name, result.version, result.entries) == (
        "Tees LSCB Procedures News",
        "RSS 2.0",
        2,
    )
    assert (result.report.new, result.report.updated) == (2, 0)
    first, second = items(engine)
    assert first.title == '"Still at Risk" research: more needs to be done'  # one line, collapsed
    assert first.url == "https://www.teescpp.example.org/news/item.aspx?id=92"
    assert first.key == "https://www.teescpp.example.org/news/item.aspx?id=92"  # the canonical link
    assert first.published_at == datetime(2013, 9, 12, 8, 30, tzinfo=UTC)
    assert first.summary_html.startswith("<p>Research by <b>The Children's Society</b>")
    assert "Research by The Children's Society found victims" in first.summary_text
    assert (first.category, first.source) == ("Procedures", "Tees LSCB Procedures News")
    assert second.summary_html == "<p>Plain text summary.</p><p>Second paragraph.</p>"


def test_atom_with_xml_base_and_html_titles(http: HTTPServer, engine: Engine) -> None:
    url = serve(http, "/atom", ATOM, content_type="application/atom+xml")
    result = add(engine, url, name="Partner")
    assert (result.version, result.feed_title) == ("Atom 1.0", "Partner & Friends")
    first, second = items(engine)
    assert first.title == "Training dates for 2027"
    assert first.url == "https://partner.example.org/blog/posts/training-2027"
    assert 'href="https://partner.example.org/events/"' in first.summary_html  # ../ from blog/
    # published wins over updated; text content is escaped, not parsed as HTML
    assert second.published_at == datetime(2026, 11, 19, 7, 0, tzinfo=UTC)
    assert "&lt;not a tag&gt;" in second.summary_html
    assert second.summary_text == "Content <not a tag> as plain text."


def test_rss10(http: HTTPServer, engine: Engine) -> None:
    result = add(engine, serve(http, "/rdf", RSS10, content_type="application/rdf+xml"))
    assert result.version == "RSS 1.0"
    (only,) = items(engine)
    assert (only.title, only.url) == ("An RSS 1.0 item", "https://rdf.example.org/a")
    assert only.published_at == datetime(2026, 11, 18, 12, 0, tzinfo=UTC)


def test_relative_links_are_made_absolute(http: HTTPServer, engine: Engine) -> None:
    url = serve(http, "/feeds/relative.xml", RELATIVE)
    add(engine, url)
    (only,) = items(engine)
    base = http.url_for("/")
    assert only.url == base + "news/1"
    assert f'href="{base}feeds/more/details"' in only.summary_html
    assert f'href="{base}root"' in only.summary_html


def test_hostile_html_is_sanitised(http: HTTPServer, engine: Engine) -> None:
    add(engine, serve(http, "/hostile", HOSTILE))
    (only,) = items(engine)
    assert "\n" not in only.title and "\r" not in only.title
    assert only.title == "Hello Bcc: victim@example.org"  # the script tag and its text are gone
    html = only.summary_html.lower()
    for bad in ("<script", "alert(", "onerror", "onclick", "onmouseover", "javascript:", "data:",
                "<iframe", "<style", "<form", "<input", "<img"):  # fmt: skip
        assert bad not in html, bad
    assert 'href="https://ok.example.org/"' in only.summary_html
    assert "Read this" in only.summary_text


def test_non_utf8_encodings(http: HTTPServer, engine: Engine) -> None:
    latin1 = ('<?xml version="1.0" encoding="ISO-8859-1"?>' + rss(
        item("Café policy for £5 à la carte", "https://enc.example.org/1"), title="Latin")[21:]
    ).encode("iso-8859-1")  # fmt: skip
    cp1252 = rss(item("Quotes \u201clike this\u201d \u2013 dash", "https://enc.example.org/2"),
                 title="Windows").encode("cp1252")  # fmt: skip
    add(engine, serve(http, "/latin1", latin1, content_type="application/xml"))
    add(engine, serve(http, "/cp1252", cp1252, content_type="text/xml; charset=windows-1252"))
    assert [i.title for i in items(engine)] == [
        "Café policy for £5 à la carte",
        "Quotes \u201clike this\u201d \u2013 dash",
    ]


def test_malformed_feed_is_stored_as_far_as_it_reads_with_a_warning(
    http: HTTPServer, engine: Engine
) -> None:
    result = add(engine, serve(http, "/broken", MALFORMED))
    assert result.status == "warning"
    assert "not well-formed XML" in result.warnings[0]
    assert [i.url for i in items(engine)] == [
        "https://broken.example.org/1",
        "https://broken.example.org/2",
    ]
    assert source(engine, result.name).last_status == "warning"


def test_entries_without_title_or_link_and_id_are_skipped_with_a_reason(
    http: HTTPServer, engine: Engine
) -> None:
    body = rss(item("", "https://x.example.org/1") + "<item><title>No link</title></item>"
               + item("Fine", "https://x.example.org/3") + item("Bad link", "javascript:alert(1)"))  # fmt: skip
    result = add(engine, serve(http, "/skips", body))
    reasons = dict(result.report.skipped)
    assert reasons == {
        "entry 1": "it has no title",
        "entry 2 (No link)": "it has neither a link nor an id",
        "entry 4 (Bad link)": "'javascript:alert(1)' is not an absolute http(s) link",
    }
    assert [i.title for i in items(engine)] == ["Fine"]


def test_entries_sharing_one_link_are_kept_apart_by_guid(http: HTTPServer, engine: Engine) -> None:
    body = rss("".join(
        item(f"Notice {n}", "https://council.example.org/", f"<guid isPermaLink='false'>n{n}</guid>")
        for n in (1, 2, 3)
    ))  # fmt: skip
    url = serve(http, "/shared", body)
    add(engine, url)
    assert [i.title for i in items(engine)] == ["Notice 1", "Notice 2", "Notice 3"]
    assert fetch(engine)[0].report.unchanged == 3  # the keys are stable


def test_future_dates_count_as_undated(http: HTTPServer, engine: Engine) -> None:
    body = rss(
        item(
            "From the future",
            "https://t.example.org/1",
            "<pubDate>Sat, 01 Jan 2101 00:00:00 GMT</pubDate>",
        )
    )
    add(engine, serve(http, "/future", body))
    (only,) = items(engine)
    assert only.published_at.year < 2101  # first seen stands in


def test_entity_expansion_bomb_is_refused(http: HTTPServer, engine: Engine) -> None:
    with pytest.raises(FeedError, match="declares XML entities"):
        add(engine, serve(http, "/bomb", BOMB))
    assert items(engine) == []


def test_an_html_page_posing_as_a_feed_suggests_import_page(
    http: HTTPServer, engine: Engine
) -> None:
    url = serve(http, "/page", HTML_PAGE, content_type="text/html; charset=utf-8")
    with pytest.raises(FeedError, match="is a web page, not an RSS or Atom feed") as err:
        add(engine, url)
    assert "import-page" in (err.value.hint or "")
    assert http.url_for("/feed.xml") in (err.value.hint or "")  # the page's own feed link


def test_garbage_is_not_a_feed() -> None:
    with pytest.raises(FeedError, match="is not an RSS or Atom feed"):
        parse_feed(
            b'{"json": true}',
            url="https://x.example.org/f",
            content_type="application/json",
            source="x",
        )


def test_feedparser_never_reads_local_files(tmp_path: Path) -> None:
    local = tmp_path / "secret.xml"
    local.write_text(rss(item("Secret", "https://secret.example.org/1")))
    # A hostile server answering with a path must not make us read that file.
    with pytest.raises(FeedError):
        parse_feed(str(local).encode(), url="https://x.example.org/f", content_type=RSS, source="x")
