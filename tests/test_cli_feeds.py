"""`digest feeds …`, `digest news import` and `news import-page`, and `send`/`preview --fetch`,
against feeds and pages served on loopback: output, errors with hints, no tracebacks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from sqlmodel import Session, select
from werkzeug import Response

from digest.db import make_engine
from digest.demo import free_port
from digest.models import IssueItem

from .helpers.feeds import (
    ATOM,
    BOMB,
    HTML_PAGE,
    MALFORMED,
    RELATIVE,
    RSS,
    RSS10,
    RSS20,
    SEED_PAGE,
    item,
    items,
    no_traceback,
    rss,
    serve,
)


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
    # Nothing new: still one line for the source, saying so.
    result = cli("feeds", "fetch")
    assert (result.exit_code, result.output) == (
        0,
        "Procedures News: 0 new, 0 updated, 2 unchanged.\n",
    )
    result = cli("feeds", "fetch", "--verbose")
    assert result.exit_code == 0
    assert result.stdout == (
        "Procedures News: 0 new, 0 updated, 2 unchanged.\nFetched 1 of 1 source; 0 new items.\n"
    )
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
    assert (result.exit_code, result.stdout) == (
        0,
        "N: 1 new, 0 updated, 1 unchanged.\nRDF: 0 new, 0 updated, 1 unchanged.\n",
    )
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
