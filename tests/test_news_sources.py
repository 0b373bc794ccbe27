"""Sources (news/sources.py) fetched again and again: no duplicates, conditional GET, items
changed or moved at their source, a 500 or a silent server recorded without touching items,
and one article carried by two feeds stored once."""

from __future__ import annotations

import threading

from pytest_httpserver import HTTPServer
from sqlalchemy.engine import Engine
from werkzeug import Request, Response

from .helpers.feeds import (
    ATOM,
    RSS,
    RSS10,
    RSS20,
    add,
    fetch,
    item,
    items,
    rss,
    serve,
    snapshot,
    source,
)


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
