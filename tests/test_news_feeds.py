"""News sources: RSS/Atom feeds and article pages, served by a real HTTP server on loopback.

Nothing here reaches beyond 127.0.0.1; failures are real (a 500, a server that does not
answer, a port nobody listens on), never mocked.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from werkzeug import Request, Response

from digest.db import make_engine
from digest.demo import free_port
from digest.models import IssueItem
from digest.news.feeds import FeedError, parse_feed
from digest.news.fetch import FetchError, fetch_url
from digest.news.pages import extract_page

from .helpers.feeds import (
    ATOM,
    BOMB,
    FAST,
    HOSTILE,
    HTML_PAGE,
    LONDON,
    MALFORMED,
    RELATIVE,
    RSS,
    RSS10,
    RSS20,
    SEED_PAGE,
    add,
    fetch,
    item,
    items,
    no_traceback,
    rss,
    serve,
    snapshot,
    source,
)

# fixtures ---------------------------------------------------------------------------------


# fetching ---------------------------------------------------------------------------------


def test_fetch_sends_user_agent_accepts_gzip_and_decompresses(http: HTTPServer) -> None:
    seen: dict[str, str] = {}

    def handler(request: Request) -> Response:
        seen.update(request.headers)
        return Response(gzip.compress(RSS20.encode()), content_type=RSS,
                        headers={"Content-Encoding": "gzip", "ETag": '"v1"'})  # fmt: skip

    http.expect_request("/feed").respond_with_handler(handler)
    result = fetch_url(http.url_for("/feed"), limits=FAST)
    assert result.content == RSS20.encode()
    assert result.etag == '"v1"'
    assert seen["User-Agent"].startswith("digest/")
    assert "gzip" in seen["Accept-Encoding"]


def test_only_http_and_https_urls() -> None:
    from digest.errors import UsageError

    for url in (
        "file:///etc/passwd",
        "ftp://example.org/feed",
        "javascript:alert(1)",
        "example.org/feed",
        "http://[::1",
        "http://a b/feed",
        "http://x.example.org/\r\nX-Injected: 1",
    ):
        with pytest.raises(UsageError, match="not an http"):
            fetch_url(url, limits=FAST)


def test_connection_refused_is_a_clear_error() -> None:
    with pytest.raises(FetchError, match="refused the connection"):
        fetch_url(f"http://127.0.0.1:{free_port()}/feed", limits=FAST)


# formats and normalising ------------------------------------------------------------------


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


def test_entries_without_title_or_link_are_skipped_with_a_reason(
    http: HTTPServer, engine: Engine
) -> None:
    body = rss(item("", "https://x.example.org/1") + "<item><title>No link</title></item>"
               + item("Fine", "https://x.example.org/3") + item("Bad link", "javascript:alert(1)"))  # fmt: skip
    result = add(engine, serve(http, "/skips", body))
    reasons = dict(result.report.skipped)
    assert reasons == {
        "entry 1": "it has no title",
        "entry 2 (No link)": "it has no link",
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


# fetching again, 304, failures ------------------------------------------------------------


def test_fetching_twice_creates_no_duplicates(http: HTTPServer, engine: Engine) -> None:
    add(engine, serve(http, "/rss.xml", RSS20))
    before = snapshot(engine)
    (again,) = fetch(engine)
    assert (again.report.new, again.report.updated, again.report.unchanged) == (0, 0, 2)
    assert snapshot(engine) == before


def test_conditional_get_gives_304_on_second_fetch(http: HTTPServer, engine: Engine) -> None:
    asked: list[tuple[str | None, str | None]] = []

    def handler(request: Request) -> Response:
        asked.append(
            (request.headers.get("If-None-Match"), request.headers.get("If-Modified-Since"))
        )
        if request.headers.get("If-None-Match") == '"abc"':
            return Response(status=304)
        return Response(RSS20, content_type=RSS,
                        headers={"ETag": '"abc"', "Last-Modified": "Thu, 12 Sep 2013 09:00:00 GMT"})  # fmt: skip

    http.expect_request("/cond").respond_with_handler(handler)
    result = add(engine, http.url_for("/cond"))
    before = snapshot(engine)
    (second,) = fetch(engine)
    assert second.status == "not_modified"
    assert asked == [(None, None), ('"abc"', "Thu, 12 Sep 2013 09:00:00 GMT")]
    assert snapshot(engine) == before
    src = source(engine, result.name)
    assert (src.last_status, src.etag, src.consecutive_failures) == ("not_modified", '"abc"', 0)


def test_an_item_changed_at_its_source_is_updated(http: HTTPServer, engine: Engine) -> None:
    state = {"title": "First title"}
    http.expect_request("/changing").respond_with_handler(
        lambda r: Response(rss(item(state["title"], "https://c.example.org/1")), content_type=RSS)
    )
    add(engine, http.url_for("/changing"))
    state["title"] = "Corrected title"
    (result,) = fetch(engine)
    assert result.report.updated == 1
    assert [i.title for i in items(engine)] == ["Corrected title"]


def test_a_moved_link_with_the_same_guid_is_the_same_item(http: HTTPServer, engine: Engine) -> None:
    """A source that moves an article to a new link (same guid) updates the item rather
    than making a new one that a later issue would send again."""
    state = {"link": "https://m.example.org/old-path"}
    http.expect_request("/moving").respond_with_handler(
        lambda r: Response(
            rss(item("Moving article", state["link"], "<guid>urn:example:42</guid>")),
            content_type=RSS,
        )
    )
    add(engine, http.url_for("/moving"))
    (first,) = items(engine)
    state["link"] = "https://m.example.org/new-path"
    (result,) = fetch(engine)
    assert result.report.updated == 1 and result.report.new == 0
    (moved,) = items(engine)
    assert moved.id == first.id
    assert moved.url == "https://m.example.org/new-path"
    # and fetching again changes nothing
    (again,) = fetch(engine)
    assert again.report.new == 0 and again.report.updated == 0


def test_a_500_is_recorded_and_changes_no_items(http: HTTPServer, engine: Engine) -> None:
    state = {"fail": False}

    def handler(request: Request) -> Response:
        if state["fail"]:
            return Response("oops", status=500)
        return Response(RSS20, content_type=RSS)

    http.expect_request("/flaky").respond_with_handler(handler)
    add(engine, http.url_for("/flaky"), name="Flaky")
    add(engine, serve(http, "/atom", ATOM, content_type="application/atom+xml"), name="Partner")
    before = snapshot(engine)
    state["fail"] = True
    results = {r.name: r for r in fetch(engine)}
    assert results["Flaky"].failed and results["Flaky"].error == "HTTP 500 INTERNAL SERVER ERROR"
    assert results["Partner"].status == "ok"  # the other source was still fetched
    fetch(engine, "Flaky")
    assert snapshot(engine) == before
    src = source(engine, "Flaky")
    assert (src.last_status, src.consecutive_failures) == ("error", 2)
    assert src.last_error == "HTTP 500 INTERNAL SERVER ERROR"
    state["fail"] = False
    fetch(engine, "Flaky")
    assert source(engine, "Flaky").consecutive_failures == 0


def test_a_source_that_does_not_answer_times_out(http: HTTPServer, engine: Engine) -> None:
    release = threading.Event()
    state = {"stall": False}

    def handler(request: Request) -> Response:
        if state["stall"]:
            release.wait(10)
        return Response(RSS20, content_type=RSS)

    http.expect_request("/slow").respond_with_handler(handler)
    try:
        add(engine, http.url_for("/slow"), name="Slow")
        add(engine, serve(http, "/rdf", RSS10), name="Quick")
        before = snapshot(engine)
        state["stall"] = True
        results = {r.name: r for r in fetch(engine)}
    finally:
        release.set()
    assert results["Slow"].failed and "timeout" in results["Slow"].error
    assert results["Quick"].status == "ok"
    assert snapshot(engine) == before


def test_redirects_are_followed_up_to_a_limit(http: HTTPServer, engine: Engine) -> None:
    http.expect_request("/old").respond_with_data("", status=301, headers={"Location": "/new"})
    serve(http, "/new", RSS10)
    result = add(engine, http.url_for("/old"))
    assert result.final_url == http.url_for("/new")
    assert len(items(engine)) == 1
    http.expect_request("/loop").respond_with_data("", status=302, headers={"Location": "/loop"})
    with pytest.raises(FetchError, match="too many redirects"):
        fetch_url(http.url_for("/loop"), limits=FAST)


def test_too_large_bodies_are_refused(http: HTTPServer, engine: Engine) -> None:
    big = rss(
        item(
            "x" * 10,
            "https://big.example.org/1",
            "<description>" + "y" * 200_000 + "</description>",
        )
    )
    serve(http, "/big", big)
    with pytest.raises(FetchError, match="larger than the 97 KB limit"):
        add(engine, http.url_for("/big"))
    # A gzip bomb: small on the wire, huge once decompressed.
    http.expect_request("/bomb.gz").respond_with_data(
        gzip.compress(b"<rss>" + b" " * 5_000_000),
        content_type=RSS,
        headers={"Content-Encoding": "gzip"},
    )
    with pytest.raises(FetchError, match="larger than"):
        add(engine, http.url_for("/bomb.gz"))
    assert items(engine) == []


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


def test_two_feeds_carrying_the_same_article_give_one_item(
    http: HTTPServer, engine: Engine
) -> None:
    shared = item("Shared article", "https://www.teescpp.example.org/news/item.aspx?id=92")
    add(
        engine,
        serve(http, "/a", rss(shared + item("Only in A", "https://a.example.org/1"))),
        name="A",
    )
    b = add(
        engine,
        serve(
            http,
            "/b",
            rss(
                item(
                    "Shared article (via B)",
                    "https://www.teescpp.example.org/news/item.aspx?id=92#top",
                )
                + item("Only in B", "https://b.example.org/1")
            ),
        ),
        name="B",
    )
    assert (b.report.new, b.report.elsewhere) == (1, 1)
    assert sorted(i.title for i in items(engine)) == ["Only in A", "Only in B", "Shared article"]
    fetch(engine)
    fetch(engine)
    assert len(items(engine)) == 3
    shared_item = next(i for i in items(engine) if i.title == "Shared article")
    assert shared_item.source == "A"  # the first source keeps it; B does not overwrite it


# article pages ----------------------------------------------------------------------------


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


# the command line -------------------------------------------------------------------------


def test_cli_feeds_add_list_fetch_remove(
    cli: Callable[..., Any], env: dict[str, str], http: HTTPServer
) -> None:
    url = serve(http, "/rss.xml", RSS20)
    result = cli("feeds", "add", url, "--name", "Procedures News", "--category", "Procedures")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Added source 'Procedures News': RSS 2.0 feed 'Tees LSCB Procedures News', 2 items "
        "(2 new, 0 updated, 0 unchanged).\n"
    )
    result = cli("feeds", "list")
    assert result.exit_code == 0
    header, _rule, row = result.stdout.splitlines()[:3]
    assert header.split() == [
        "name",
        "category",
        "status",
        "last",
        "fetch",
        "items",
        "failures",
        "url",
    ]
    assert row.startswith("Procedures News  Procedures  ok") and row.endswith(
        f"2      0         {url}"
    )
    # Nothing new: quiet, for cron.
    result = cli("feeds", "fetch")
    assert (result.exit_code, result.output) == (0, "")
    result = cli("feeds", "fetch", "--verbose")
    assert result.exit_code == 0
    assert "Procedures News: 0 new, 0 updated, 2 unchanged." in result.stdout
    result = cli("feeds", "remove", "Procedures News")
    assert (result.exit_code, result.stdout) == (
        0,
        "Removed source 'Procedures News'; its 2 items stay in the news list.\n",
    )
    assert cli("feeds", "list").stdout == "No sources yet. Add one with `digest feeds add URL`.\n"
    assert len(cli("news", "list", "--format", "json").stdout) > 10


def test_cli_feeds_fetch_reports_new_items_and_failures(
    cli: Callable[..., Any], env: dict[str, str], http: HTTPServer
) -> None:
    state = {"body": rss(item("One", "https://n.example.org/1")), "status": 200}
    http.expect_request("/n").respond_with_handler(
        lambda r: Response(state["body"], status=state["status"], content_type=RSS)
    )
    assert cli("feeds", "add", http.url_for("/n"), "--name", "N").exit_code == 0
    assert cli("feeds", "add", serve(http, "/rdf", RSS10), "--name", "RDF").exit_code == 0
    state["body"] = rss(
        item("One", "https://n.example.org/1") + item("Two", "https://n.example.org/2")
    )
    result = cli("feeds", "fetch")
    assert (result.exit_code, result.stdout) == (0, "N: 1 new, 0 updated, 1 unchanged.\n")
    state["status"] = 503
    result = cli("feeds", "fetch")
    assert result.exit_code == 1
    assert result.stderr == (
        "N: FAILED: HTTP 503 SERVICE UNAVAILABLE\n"
        "Error: 1 of 2 sources failed: N; the others were fetched\n"
        "Hint: `digest feeds list` shows each source's last error; stored items were not changed.\n"
    )
    result = cli("feeds", "fetch", "N")
    assert "N: FAILED: HTTP 503 SERVICE UNAVAILABLE (2 failures in a row)" in result.stderr
    listing = cli("feeds", "list").stdout
    assert "N: HTTP 503 SERVICE UNAVAILABLE" in listing and "  error  " in listing
    no_traceback(result)


@pytest.mark.parametrize(
    ("args", "code", "message", "hint"),
    [
        (
            ["feeds", "add", "file:///etc/passwd"],
            2,
            "Error: 'file:///etc/passwd' is not an http(s) URL",
            "https://",
        ),
        (["feeds", "add", "/page"], 2, "Error: '/page' is not an http(s) URL", "https://"),
        (
            ["feeds", "add", "{base}/page"],
            1,
            "is a web page, not an RSS or Atom feed",
            "import-page",
        ),
        (["feeds", "add", "{base}/missing"], 1, "Error: HTTP 404 NOT FOUND", "moved"),
        (
            ["feeds", "add", "{base}/bomb"],
            1,
            "Error: the feed declares XML entities",
            "Real feeds never",
        ),
        (
            ["feeds", "add", "http://127.0.0.1:{dead}/feed"],
            1,
            "refused the connection",
            "may be down",
        ),
        (["feeds", "fetch", "nope"], 1, "Error: no source named or at 'nope'", "feeds list"),
        (["feeds", "remove", "nope"], 1, "Error: no source named or at 'nope'", "feeds list"),
        (
            ["news", "import-page", "{base}/rss.xml"],
            1,
            "is a feed, not an article page",
            "digest news import",
        ),
        (["news", "import-page", "ftp://x.example.org/"], 2, "is not an http(s) URL", "https://"),
        (["news", "import", "{base}/page"], 1, "is a web page", "import-page"),
    ],
)
def test_cli_bad_input_gives_error_and_hint(
    cli: Callable[..., Any], env: dict[str, str], http: HTTPServer,
    args: list[str], code: int, message: str, hint: str,
) -> None:  # fmt: skip
    serve(http, "/page", HTML_PAGE, content_type="text/html")
    serve(http, "/bomb", BOMB)
    serve(http, "/rss.xml", RSS20)
    http.expect_request("/missing").respond_with_data("no", status=404)
    base = http.url_for("/").rstrip("/")
    result = cli(*[a.format(base=base, dead=free_port()) for a in args])
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert "Hint: " in result.stderr and hint in result.stderr.split("Hint: ", 1)[1]
    assert result.stdout == ""
    no_traceback(result)


def test_cli_feeds_add_twice_and_name_clash(
    cli: Callable[..., Any], env: dict[str, str], http: HTTPServer
) -> None:
    url = serve(http, "/rss.xml", RSS20)
    assert cli("feeds", "add", url).exit_code == 0
    result = cli("feeds", "add", url)
    assert result.exit_code == 2
    assert f"Error: {url} is already a source, named 'Tees LSCB Procedures News'" in result.stderr
    result = cli("feeds", "add", serve(http, "/other", RSS20.replace("id=9", "id=7")))
    assert result.exit_code == 2
    assert "Error: there is already a source named 'Tees LSCB Procedures News'" in result.stderr
    assert "Hint: Choose another with --name." in result.stderr


def test_cli_news_import_feed_url_and_file(
    cli: Callable[..., Any], env: dict[str, str], http: HTTPServer, workdir: Path
) -> None:
    result = cli("news", "import", serve(http, "/atom", ATOM, content_type="application/atom+xml"))
    assert (result.exit_code, result.stdout) == (
        0,
        "Atom 1.0 feed 'Partner & Friends': 2 new, 0 updated, 0 unchanged.\n",
    )
    (workdir / "feed.rss").write_text(
        RELATIVE.replace("<link>/</link>", "<link>https://rel.example.org/</link>")
    )
    result = cli("news", "import", "feed.rss")
    assert (result.exit_code, result.stdout) == (
        0,
        "RSS 2.0 feed 'Relative': 1 new, 0 updated, 0 unchanged.\n",
    )
    assert any(
        i.url == "https://rel.example.org/news/1"
        for i in items(make_engine(env["DIGEST_DATABASE_URL"]))
    )
    # JSON still works
    (workdir / "items.json").write_text(
        '[{"title": "From JSON", "url": "https://j.example.org/1"}]'
    )
    result = cli("news", "import", "items.json")
    assert (result.exit_code, result.stdout) == (0, "1 new, 0 updated, 0 unchanged, 0 rejected.\n")
    # a malformed feed file: stored as far as it reads, with the warning on stderr
    (workdir / "broken.xml").write_text(MALFORMED)
    result = cli("news", "import", "broken.xml")
    assert result.exit_code == 0
    assert "Warning: the feed is not well-formed XML" in result.stderr


def test_cli_news_import_page(
    cli: Callable[..., Any], env: dict[str, str], http: HTTPServer
) -> None:
    url = serve(http, "/news/item.aspx", SEED_PAGE, content_type="text/html; charset=utf-8")
    result = cli("news", "import-page", url + "?id=92", "--category", "Procedures")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert (
        lines[0]
        == "Added '\"Still at Risk\" research finds that more needs to be done to safeguard trafficked children'"
    )
    assert (
        lines[1]
        == "  Link:      https://www.teescpp.example.org/news/item.aspx?id=92 (the page’s canonical link)"
    )
    assert (
        lines[2]
        == "  Published: Thursday 12 September 2013 (from the page text 'Thurs 12th Sept 2013')"
    )
    assert lines[3] == "  Category:  Procedures"
    assert lines[4].startswith("  Summary:   Research carried out by The Children’s Society")
    again = cli("news", "import-page", url + "?id=92", "--category", "Procedures")
    assert again.stdout.startswith("Unchanged: ")
    (stored,) = items(make_engine(env["DIGEST_DATABASE_URL"]))
    assert stored.category == "Procedures" and "<script" not in stored.summary_html


def test_send_and_preview_fetch_first(
    cli: Callable[..., Any], env: dict[str, str], http: HTTPServer, smtp_server: Any, workdir: Path
) -> None:
    now = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    state = {"title": "Fresh news", "status": 200}
    http.expect_request("/weekly").respond_with_handler(lambda r: Response(
        rss(item(state["title"], "https://w.example.org/1", f"<pubDate>{now}</pubDate>")),
        status=state["status"], content_type=RSS,
    ))  # fmt: skip
    assert cli("feeds", "add", http.url_for("/weekly"), "--name", "Weekly").exit_code == 0
    assert cli("subscribers", "add", "ana@example.org").exit_code == 0
    state["title"] = "Fresh news, corrected"
    result = cli("preview", "--fetch", "--out", str(workdir / "p"))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Weekly: 0 new, 1 updated, 0 unchanged.\nIssue 1:")
    assert "Fresh news, corrected" in (workdir / "p" / "digest.txt").read_text()
    result = cli("send", "--fetch", "--yes")
    assert result.exit_code == 0, result.output
    smtp_server.wait_for(1)
    assert (
        "Fresh news, corrected"
        in smtp_server.messages[0].message.get_body(("plain",)).get_content()
    )
    # Changed at the source after it was sent: the item is updated, the issue keeps what it sent;
    # a failing source only warns, and the next send has nothing to re-send.
    state["title"] = "Rewritten after sending"
    assert cli("feeds", "fetch").exit_code == 0
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    with Session(engine) as session:
        assert session.exec(select(IssueItem.title)).all() == ["Fresh news, corrected"]
    assert [i.title for i in items(engine)] == ["Rewritten after sending"]
    state["status"] = 500
    result = cli("send", "--fetch", "--yes")
    assert result.exit_code == 0, result.output
    assert "Weekly: FAILED: HTTP 500 INTERNAL SERVER ERROR" in result.stderr
    assert (
        "Warning: 1 of 1 source could not be fetched; going on with the items already stored."
        in result.stderr
    )
    assert "nothing to send" in result.stdout
    assert len(smtp_server.messages) == 1
