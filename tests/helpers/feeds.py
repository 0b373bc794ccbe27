"""News sources for the tests: feeds and pages as their publishers serve them (RSS 2.0, Atom,
RSS 1.0, relative links, hostile HTML, malformed XML, an entity bomb, an HTML page, an article
page shaped like the seed item), and short ways to serve, add and fetch them on loopback."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from pytest_httpserver import HTTPServer
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from digest.db import session_scope
from digest.models import NewsItem, Source
from digest.news.fetch import FetchLimits
from digest.news.sources import add_source, fetch_sources

# Small limits so the size and time caps are reached quickly; no test asserts a duration.
FAST = FetchLimits(timeout=2.0, total_timeout=10, max_bytes=100_000, workers=4)


RSS = "application/rss+xml"


RSS20 = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel>
  <title>Tees LSCB Procedures News</title>
  <link>https://www.teescpp.example.org/news</link>
  <description>Procedures news</description>
  <item>
    <title>  "Still at Risk" research:
      more needs to be done  </title>
    <link>https://www.teescpp.example.org/news/item.aspx?id=92</link>
    <guid>tees-92</guid>
    <pubDate>Thu, 12 Sep 2013 09:30:00 +0100</pubDate>
    <description>&lt;p&gt;Research by &lt;b&gt;The Children's Society&lt;/b&gt; found victims of
      trafficking are still inadequately protected.&lt;/p&gt;</description>
  </item>
  <item>
    <title>Neglect toolkit updated</title>
    <link>https://www.teescpp.example.org/news/item.aspx?id=93</link>
    <pubDate>Fri, 13 Sep 2013 10:00:00 GMT</pubDate>
    <description>Plain text summary.

Second paragraph.</description>
  </item>
</channel></rss>
"""


ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://partner.example.org/blog/">
  <title type="text">Partner &amp; Friends</title>
  <id>urn:uuid:feed-1</id>
  <updated>2026-11-20T10:00:00Z</updated>
  <entry>
    <title type="html">Training &lt;em&gt;dates&lt;/em&gt; for 2027</title>
    <link rel="alternate" href="posts/training-2027"/>
    <id>urn:uuid:entry-1</id>
    <updated>2026-11-20T10:00:00Z</updated>
    <summary type="html">&lt;p&gt;See the &lt;a href="../events/"&gt;events page&lt;/a&gt;.&lt;/p&gt;</summary>
  </entry>
  <entry>
    <title>Undated but updated</title>
    <link href="https://partner.example.org/blog/posts/2"/>
    <id>urn:uuid:entry-2</id>
    <published>2026-11-19T08:00:00+01:00</published>
    <updated>2026-11-21T08:00:00Z</updated>
    <content type="text">Content &lt;not a tag&gt; as plain text.</content>
  </entry>
</feed>
"""


RSS10 = """<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
         xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel rdf:about="https://rdf.example.org/">
    <title>RDF News</title><link>https://rdf.example.org/</link><description>d</description>
    <items><rdf:Seq><rdf:li resource="https://rdf.example.org/a"/></rdf:Seq></items>
  </channel>
  <item rdf:about="https://rdf.example.org/a">
    <title>An RSS 1.0 item</title>
    <link>https://rdf.example.org/a</link>
    <description>One</description>
    <dc:date>2026-11-18T12:00:00Z</dc:date>
  </item>
</rdf:RDF>
"""


RELATIVE = """<?xml version="1.0"?>
<rss version="2.0"><channel><title>Relative</title><link>/</link>
  <item><title>Relative link</title><link>/news/1</link>
    <description>&lt;a href="more/details"&gt;details&lt;/a&gt; and &lt;a href="/root"&gt;root&lt;/a&gt;</description>
  </item>
</channel></rss>
"""


HOSTILE = """<?xml version="1.0"?>
<rss version="2.0"><channel><title>Hostile</title><link>https://evil.example.org/</link>
  <item><title>Hello&lt;script&gt;alert(1)&lt;/script&gt;
Bcc: victim@example.org</title>
    <link>https://evil.example.org/1</link>
    <description><![CDATA[<p onclick="steal()">Read <a href="javascript:alert(1)">this</a>
      <a href="data:text/html;base64,PHNjcmlwdD4=">and this</a>
      <img src=x onerror="alert(1)"><script>alert(2)</script><style>p{}</style>
      <iframe src="https://evil.example.org/frame"></iframe>
      <form action="https://evil.example.org/"><input name=q></form>
      <a href="https://ok.example.org/" onmouseover="x()">ok</a></p>]]></description>
  </item>
</channel></rss>
"""


MALFORMED = """<?xml version="1.0"?>
<rss version="2.0"><channel><title>Broken</title><link>https://broken.example.org/</link>
  <item><title>First & only well-read</title><link>https://broken.example.org/1</link></item>
  <item><title>Second</title><link>https://broken.example.org/2</link>
    <description>unclosed <b>bold</description></item>
</channel>
"""


BOMB = """<?xml version="1.0"?>
<!DOCTYPE rss [
<!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
<!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
]>
<rss version="2.0"><channel><title>Bomb</title>
  <item><title>&f;</title><link>https://bomb.example.org/1</link></item>
</channel></rss>
"""


HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><title>Partner news</title>
<link rel="alternate" type="application/rss+xml" title="RSS" href="/feed.xml">
</head><body><h1>Partner news</h1><p>Welcome.</p></body></html>
"""


# Shaped like the seed item page (shared/seeds): the site's name as <title> and <h1>, the
# article's title as a heading in the content, the date printed at the end of the text.
SEED_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Tees LSCB Procedures News</title>
<link rel="canonical" href="https://www.teescpp.example.org/news/item.aspx?id=92">
<script>var tracking = 1;</script>
</head><body>
<div id="header"><h1>Tees LSCB Procedures News</h1>
  <ul class="nav"><li><a href="/">Home</a></li><li><a href="/news">News</a></li></ul></div>
<div id="content">
<p>This page gives further information and relevant links for the news item selected.</p>
<h2>"Still at Risk" research finds that more needs to be done to safeguard trafficked children</h2>
<p>Research carried out by The Children&#8217;s Society and Refugee Council, &#8220;Still at
Risk&#8221;, found victims of child trafficking are still being inadequately protected, leaving
them at risk of going missing from care or experiencing further abuse and exploitation.</p>
<p>The charities interviewed 17 young victims of trafficking about their experiences of social
services and other agencies for the report. Only a few of the 17 said they had had a positive
experience with social workers.</p>
<p>Overall, the report suggests, some ways in which the support provided for children who have
been trafficked can be improved are to:</p>
<ul><li>increase understanding of child trafficking and the statutory responsibilities to
safeguard all children, regardless of their immigration status;</li>
<li>ensure all agencies implement all statutory and practice guidance for safeguarding
trafficked children and separated children more widely;</li></ul>
<p>The Still At Risk report is available on:
<a href="http://www.childrenssociety.org.uk/">http://www.childrenssociety.org.uk/</a></p>
<p>Thurs 12th Sept 2013</p>
<script>alert("x")</script>
</div>
<div id="footer"><p>Tees Local Safeguarding Children Boards</p></div>
</body></html>
"""


def rss(items: str, title: str = "Feed") -> str:
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>{title}</title>'
        f"<link>https://example.org/</link>{items}</channel></rss>"
    )


def item(title: str, link: str, extra: str = "") -> str:
    return f"<item><title>{title}</title><link>{link}</link>{extra}</item>"


def serve(
    http: HTTPServer, path: str, body: str | bytes, content_type: str = RSS, **kw: Any
) -> str:
    http.expect_request(path).respond_with_data(body, content_type=content_type, **kw)
    return http.url_for(path)


def add(engine: Engine, url: str, **kw: Any) -> Any:
    with session_scope(engine) as session:
        return add_source(session, url=url, limits=FAST, **kw)


def fetch(engine: Engine, *names: str) -> list[Any]:
    with session_scope(engine) as session:
        return fetch_sources(session, names=names, limits=FAST)


def items(engine: Engine) -> list[NewsItem]:
    with Session(engine) as session:
        return list(session.exec(select(NewsItem).order_by(NewsItem.id)).all())


def snapshot(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(sa.text("SELECT * FROM news_item ORDER BY id"))]


def source(engine: Engine, name: str) -> Source:
    with Session(engine) as session:
        found = session.exec(select(Source).where(Source.name == name)).one()
        return found


def no_traceback(result: Any) -> None:
    assert "Traceback" not in result.output
