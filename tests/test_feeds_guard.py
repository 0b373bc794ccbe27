"""Fetching feeds safely: an overall deadline for the whole request (a server that trickles
its headers cannot hold up `feeds fetch` and the weekly job), and no redirect from a feed into
this server's own network. Local servers only: the redirect to 169.254.169.254 is refused
before anything connects to it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from sqlmodel import Session

from digest.db import make_engine
from digest.demo import free_port
from digest.news.fetch import FetchError, FetchLimits, fetch_url
from digest.news.sources import add_source, fetch_sources

RSS = """<?xml version="1.0"?><rss version="2.0"><channel><title>Local News</title>
<link>https://example.org/</link><item><title>One</title><link>https://example.org/1</link>
</item></channel></rss>"""


@pytest.fixture
def http() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Trickler:
    """An HTTP server on loopback that sends its status line, then one header byte every
    0.2 s: each read gets a byte well within any per-read timeout. It gives up after 20 s."""

    def __init__(self) -> None:
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/feed.xml"

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        deadline = time.monotonic() + 20
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while time.monotonic() < deadline and not self.stop.is_set():
                conn.sendall(b"z")
                time.sleep(0.2)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.fixture
def trickler() -> Iterator[Trickler]:
    server = Trickler()
    try:
        yield server
    finally:
        server.close()


def test_trickled_headers_meet_the_overall_deadline(trickler: Trickler) -> None:
    limits = FetchLimits(timeout=1, total_timeout=2)
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"127.0.0.1 took longer than 2 s in all to answer"):
        fetch_url(trickler.url, limits=limits)
    assert time.monotonic() - started < 5


def test_feeds_fetch_is_not_held_up_by_a_trickling_source(
    env: dict[str, str], trickler: Trickler, http: HTTPServer
) -> None:
    http.expect_request("/rss.xml").respond_with_data(RSS, content_type="application/rss+xml")
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    limits = FetchLimits(timeout=1, total_timeout=2, workers=2)
    with Session(engine) as session:
        add_source(session, url=http.url_for("/rss.xml"), name="Good", limits=limits)
        from digest.models import Source

        session.add(Source(name="Slow", url=trickler.url))
        session.commit()
        started = time.monotonic()
        results = {r.name: r for r in fetch_sources(session, limits=limits)}
        session.commit()
    assert time.monotonic() - started < 5
    assert not results["Good"].failed
    assert results["Slow"].failed and "took longer than 2 s in all" in (results["Slow"].error or "")
    engine.dispose()


def _redirect(http: HTTPServer, to: str) -> str:
    http.expect_request("/feed").respond_with_data("", status=302, headers={"Location": to})
    return http.url_for("/feed")


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, a link-local address"),
        ("http://[fd00:ec2::254]/latest/", "fd00:ec2::254, a private address"),
        ("http://10.0.0.5/admin", "10.0.0.5, a private address"),
        ("http://localhost:{port}/rss.xml", "localhost (127.0.0.1), a loopback address"),
    ],
)
def test_a_redirect_into_a_private_network_is_refused_before_connecting(
    http: HTTPServer, target: str, reason: str
) -> None:
    http.expect_request("/rss.xml").respond_with_data(RSS, content_type="application/rss+xml")
    url = _redirect(http, target.format(port=http.port))
    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        fetch_url(url, limits=FetchLimits(timeout=5))
    assert f"refusing to follow a redirect to {reason}" in info.value.message
    assert time.monotonic() - started < 1  # refused, not a connection that timed out
    assert len(http.log) == 1  # only the first request reached any server


def test_a_redirect_on_the_host_staff_typed_is_followed(http: HTTPServer) -> None:
    http.expect_request("/rss.xml").respond_with_data(RSS, content_type="application/rss+xml")
    result = fetch_url(_redirect(http, "/rss.xml"))
    assert result.url == http.url_for("/rss.xml") and result.redirected


def test_the_cli_says_why_and_stores_nothing(
    cli: Callable[..., Any], env: dict[str, str], http: HTTPServer
) -> None:
    url = _redirect(http, "http://169.254.169.254/latest/meta-data/")
    r = cli("feeds", "add", url)
    assert r.exit_code == 1
    assert "Error: refusing to follow a redirect to 169.254.169.254, a link-local address" in (
        r.stderr
    )
    assert "Hint: A feed on the internet must not lead digest into this server's own network" in (
        r.stderr
    )
    assert "Traceback" not in r.output
    assert url not in cli("feeds", "list").stdout


def test_private_addresses_typed_by_staff_are_allowed_unless_the_setting_refuses_them(
    cli: Callable[..., Any],
    env: dict[str, str],
    http: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    http.expect_request("/rss.xml").respond_with_data(RSS, content_type="application/rss+xml")
    r = cli("feeds", "add", http.url_for("/rss.xml"), "--name", "Intranet")
    assert r.exit_code == 0, r.output
    monkeypatch.setenv("DIGEST_ALLOW_PRIVATE_FEEDS", "false")
    r = cli("feeds", "fetch")
    assert r.exit_code == 1
    assert "refusing to fetch from 127.0.0.1, a loopback address (allow_private_feeds is off)" in (
        r.output
    )
    r = cli("news", "import-page", http.url_for("/rss.xml"))
    assert r.exit_code == 1 and "allow_private_feeds is off" in r.stderr
