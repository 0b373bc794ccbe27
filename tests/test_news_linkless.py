"""Feed entries with an id (guid) but no link (status pages, some podcasts): kept, keyed on
the feed and the id, linked to the feed's own page when it names one or shown without a link
in both parts of the email; and `digest feeds fetch` saying, source by source, what it did.
The feeds are served over real HTTP on loopback, with ETags, as publishers serve them."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from .helpers.feeds import RSS, items, no_traceback
from .helpers.smtp import SmtpServer

Cli = Callable[..., Any]

STATUS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel>
  <title>Case system status</title>
  <link>https://status.partnership.example.org/</link>
  <description>Incidents</description>
  <item>
    <title>Case recording system unavailable on Saturday</title>
    <guid isPermaLink="false">incident-41</guid>
    <pubDate>Mon, 30 Nov 2026 08:00:00 GMT</pubDate>
    <description>Planned maintenance from 08:00 to 12:00.</description>
  </item>
  <item>
    <title>Referral form back to normal</title>
    <guid isPermaLink="false">incident-42</guid>
    <pubDate>Mon, 30 Nov 2026 09:00:00 GMT</pubDate>
  </item>
  <item>
    <title>Maintenance notes</title>
    <link>https://status.partnership.example.org/notes/7</link>
    <guid isPermaLink="false">notes-7</guid>
    <pubDate>Mon, 30 Nov 2026 07:00:00 GMT</pubDate>
  </item>
  <item><title>Neither link nor id</title></item>
</channel></rss>
"""

PODCAST = """<?xml version="1.0"?>
<rss version="2.0"><channel><title>Partnership podcast</title>
  <item>
    <title>Episode 3: listening to children</title>
    <guid isPermaLink="false">tag:podcast.example.org,2026:ep3</guid>
    <pubDate>Sun, 29 Nov 2026 10:00:00 GMT</pubDate>
    <description>Forty minutes with the designated safeguarding leads.</description>
  </item>
</channel></rss>
"""


def _serve_with_etag(http: HTTPServer, path: str, body: str) -> str:
    etag = f'"{abs(hash(body))}"'

    def handler(request: Request) -> Response:
        if request.headers.get("If-None-Match") == etag:
            return Response(status=304, headers={"ETag": etag})
        return Response(body, content_type=RSS, headers={"ETag": etag})

    http.expect_request(path).respond_with_handler(handler)
    return http.url_for(path)


def test_linkless_entries_are_kept_and_fetch_reports_each_source(
    cli: Cli, env: dict[str, str], engine: Any, http: HTTPServer
) -> None:
    status_url = _serve_with_etag(http, "/status.rss", STATUS)
    podcast_url = _serve_with_etag(http, "/podcast.rss", PODCAST)
    r = cli("feeds", "add", status_url, "--name", "Status")
    assert r.exit_code == 0, r.output
    assert r.stdout == (
        "Added source 'Status': RSS 2.0 feed 'Case system status', 4 items "
        "(3 new, 0 updated, 0 unchanged, 1 skipped).\n"
    )
    assert cli("feeds", "add", podcast_url, "--name", "Podcast").exit_code == 0
    stored = {i.title: i for i in items(engine)}
    assert set(stored) == {
        "Case recording system unavailable on Saturday", "Referral form back to normal",
        "Maintenance notes", "Episode 3: listening to children",
    }  # fmt: skip
    # keyed on the feed and the id; linked to the feed's page, or to nothing when it has none
    saturday = stored["Case recording system unavailable on Saturday"]
    assert (
        saturday.key.startswith("guid:")
        and saturday.url == "https://status.partnership.example.org/"
    )
    assert stored["Referral form back to normal"].key != saturday.key
    assert stored["Maintenance notes"].url == "https://status.partnership.example.org/notes/7"
    assert stored["Episode 3: listening to children"].url == ""
    # fetched again: a 304 for each; then a changed feed, and a source that fails
    r = cli("feeds", "fetch")
    assert (r.exit_code, r.stdout) == (
        0,
        "Podcast: not modified since the last fetch.\nStatus: not modified since the last fetch.\n",
    )
    http.clear()
    _serve_with_etag(http, "/status.rss", STATUS.replace("12:00", "13:00"))
    http.expect_request("/podcast.rss").respond_with_data("gone", status=410)
    r = cli("feeds", "fetch")
    assert r.exit_code == 1
    assert r.stdout == "Status: 0 new, 1 updated, 2 unchanged, 1 skipped.\n"
    assert r.stderr.splitlines() == [
        "Podcast: FAILED: HTTP 410 GONE",
        "  entry 4 (Neither link nor id): skipped, it has neither a link nor an id",
        "Error: 1 of 2 sources failed: Podcast; the others were fetched",
        "Hint: `digest feeds list` shows each source's last error; stored items were not changed.",
    ]
    no_traceback(r)
    assert len(items(engine)) == 4  # the changed entry is the same item, by its id
    # two items share the status page's link: by link is ambiguous, by id is not
    r = cli("news", "hold", "https://status.partnership.example.org/")
    assert r.exit_code == 2
    assert r.stderr == (
        "Error: 2 items link to https://status.partnership.example.org/ (items 1, 2)\n"
        "Hint: Give the item's id instead.\n"
    )
    assert cli("news", "hold", "2").exit_code == 0
    listing = cli("news", "list").stdout
    assert re.search(r"next +2026-11-29 10:00 +- +Episode 3: listening to children +-\n", listing)
    assert re.search(r"\n2 +held +2026-11-30 09:00 +- +Referral form back to normal ", listing)


def test_a_linkless_item_in_the_email_has_no_empty_link(
    cli: Cli, env: dict[str, str], http: HTTPServer, smtp_server: SmtpServer, workdir: Path
) -> None:
    assert cli("feeds", "add", _serve_with_etag(http, "/p.rss", PODCAST)).exit_code == 0
    r = cli("news", "add", "--title", "Linked news", "--url", "https://example.org/linked",
            "--published", "2026-11-30", "--category", "Partnership podcast")  # fmt: skip
    assert r.exit_code == 0
    assert cli("preview").exit_code == 0
    html = (workdir / "preview" / "digest.html").read_text(encoding="utf-8")
    assert 'href=""' not in html
    assert re.search(r'<h3 dir="auto"[^>]*>Episode 3: listening to children</h3>', html)
    assert html.count('aria-label="Read more:') == 1  # the linked item only
    text = (workdir / "preview" / "digest.txt").read_text(encoding="utf-8")
    block = text.split("Episode 3: listening to children", 1)[1].split("\n\n", 2)
    # the title, then the source and date line, then straight to the summary: no link line
    assert block[0].strip().startswith("Partnership podcast · Sunday 29 November 2026")
    assert "http" not in block[0]
    assert block[1].strip() == "Forty minutes with the designated safeguarding leads."
    assert cli("subscribers", "add", "ana@example.org").exit_code == 0
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    shown = cli("issues", "show", "1").stdout
    assert "[News] Episode 3: listening to children\n     (no link)" in shown
    message = smtp_server.messages[0].message
    sent_text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert (
        "Episode 3: listening to children" in sent_text
        and "https://example.org/linked" in sent_text
    )
