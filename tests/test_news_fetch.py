"""Fetching (news/fetch.py) from a real HTTP server on loopback: User-Agent and gzip, http(s)
only, a refused connection, redirects up to a limit, size caps and a gzip bomb."""

from __future__ import annotations

import gzip

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy.engine import Engine
from werkzeug import Request, Response

from digest.demo import free_port
from digest.news.fetch import FetchError, fetch_url

from .helpers.feeds import (
    FAST,
    RSS,
    RSS10,
    RSS20,
    add,
    item,
    items,
    rss,
    serve,
)


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
