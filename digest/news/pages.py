"""Article pages for sources with no feed: fetch one page, extract its article, store one item.

Extraction is trafilatura's (main text, title, canonical link, dates from the page's
markup); we add what news pages of small sites need: the article's own heading when the
<title> is only the site's name, and a date printed in the text ("Thurs 12th Sept 2013").
"""

from __future__ import annotations

import contextlib
import html
import re
import warnings
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session

from digest.dates import parse_when
from digest.models import NewsItem, utcnow
from digest.news.feeds import FeedError
from digest.news.fetch import ACCEPT_PAGE, FetchLimits, fetch_url
from digest.news.items import ItemInput, Outcome, upsert_item
from digest.news.normalise import check_url, clean_text, item_key

SUMMARY_CHARS = 600  # about a paragraph or two: the digest links to the page for the rest
_DAY = r"(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+"
_DATE_IN_TEXT = re.compile(
    r"(?:" + _DAY + r")?(?:"
    r"\d{1,2}(?:st|nd|rd|th)?\s+[a-z]{3,9}\.?,?\s+\d{4}"  # 12th Sept 2013
    r"|[a-z]{3,9}\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4}"  # September 12, 2013
    r"|\d{4}-\d{2}-\d{2}"  # 2013-09-12
    r"|\d{1,2}/\d{1,2}/\d{4}"  # 12/09/2013
    r")",
    re.IGNORECASE,
)
_FEEDISH = re.compile(rb"^\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*<(rss|feed|rdf:RDF)[\s>]", re.DOTALL)


@dataclass(frozen=True)
class ExtractedPage:
    url: str  # the canonical link when the page gives one, else the address fetched
    canonical: bool
    title: str
    published: datetime | None
    date_from: str  # where the date came from, for people
    summary_html: str
    text: str  # the main text, for display


def extract_page(
    content: bytes | str, *, url: str, tz: ZoneInfo, now: datetime | None = None
) -> ExtractedPage:
    """The article in an HTML page fetched from `url`. Raises FeedError when there is none."""
    import trafilatura

    now = now or utcnow()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lxml's FutureWarnings from inside trafilatura
        doc: Any = trafilatura.bare_extraction(
            content,
            url=url,
            with_metadata=True,
            include_links=True,
            include_formatting=True,
            include_comments=False,
            # Markup only (meta tags, <time>, the URL): a year found anywhere is not a date.
            date_extraction_params={"extensive_search": False, "original_date": True},
        )
    if doc is None or getattr(doc, "body", None) is None:
        raise FeedError(
            f"found no article text in {url}",
            hint="The page may be built by JavaScript or be a list of links; add the item with "
            "`digest news add` instead.",
        )
    blocks = [(el.tag, el) for el in doc.body]
    meta_title = clean_text(str(doc.title or ""))
    title, start = _title(meta_title, blocks)
    if not title:
        raise FeedError(f"found no title in {url}", hint="Add the item with `digest news add`.")
    published, date_from, date_block = _date(doc, blocks, tz, now)
    canonical_url, canonical = url, False
    if doc.url:
        with contextlib.suppress(ValueError):  # a broken canonical link: keep the address
            canonical_url, canonical = check_url(str(doc.url), base=url), str(doc.url) != url
    summary = _summary(blocks[start:], skip={id(date_block)} if date_block is not None else set())
    text = "\n\n".join(
        _text(el) for _tag, el in blocks[start:] if el is not date_block and _text(el)
    )
    return ExtractedPage(
        url=canonical_url, canonical=canonical, title=title, published=published,
        date_from=date_from, summary_html=summary, text=text,
    )  # fmt: skip


def _text(el: Any) -> str:
    return re.sub(r"\s+", " ", "".join(el.itertext())).strip()


def _title(meta_title: str, blocks: list[tuple[str, Any]]) -> tuple[str, int]:
    """The article's heading when it opens the main text, else the page's title.

    Small sites often have <title>Site name</title> and the article's title as a heading
    in the content (like the Tees LSCB news pages). Returns the title and the index of the
    first block after it.
    """
    for i, (tag, el) in enumerate(blocks[:3]):
        if tag == "head":
            heading = clean_text(_text(el))
            if len(heading.split()) >= 3 or not meta_title:
                return heading, i + 1
    return meta_title, 0


def _date(
    doc: Any, blocks: list[tuple[str, Any]], tz: ZoneInfo, now: datetime
) -> tuple[datetime | None, str, Any]:
    candidates: list[tuple[str, str, Any]] = []
    if doc.date:
        candidates.append((str(doc.date), "the page's metadata", None))
    for _tag, el in blocks:
        text = _text(el)
        # A short block that is mostly a date ("Thurs 12th Sept 2013", "Posted 3 May 2024").
        if len(text) <= 60:
            m = _DATE_IN_TEXT.search(text)
            if m:
                candidates.append((m.group(0), f"the page text {text!r}", el))
    for value, where, el in candidates:
        try:
            moment = parse_when(value, tz)
        except ValueError:
            continue
        if moment <= now + timedelta(days=1):
            return moment, where, el
    return None, "none found: the time it was imported", None


def _summary(blocks: list[tuple[str, Any]], skip: set[int]) -> str:
    """The first paragraphs of the article, as simple HTML (sanitised again when stored)."""
    parts: list[str] = []
    size = 0
    for tag, el in blocks:
        if id(el) in skip or size >= SUMMARY_CHARS:
            continue
        if tag == "head" and parts:
            break  # the next section: enough for a teaser
        rendered = _html(el)
        if rendered:
            parts.append(rendered)
            size += len(_text(el))
    return "".join(parts)


def _html(el: Any) -> str:
    """trafilatura's XML (p, list/item, ref, hi, lb, quote) as the HTML our sanitiser allows."""
    inner = html.escape(el.text or "", quote=False)
    for child in el:
        inner += _html(child) + html.escape(child.tail or "", quote=False)
    tag = el.tag
    if tag == "p":
        return f"<p>{inner}</p>" if inner.strip() else ""
    if tag == "list":
        kind = "ol" if el.get("rend") == "ol" else "ul"
        return f"<{kind}>{inner}</{kind}>"
    if tag == "item":
        return f"<li>{inner}</li>"
    if tag == "quote":
        return f"<blockquote>{inner}</blockquote>"
    if tag == "head":
        return f"<h4>{inner}</h4>"
    if tag == "ref" and el.get("target"):
        return f'<a href="{html.escape(el.get("target"))}">{inner}</a>'
    if tag == "hi":
        rend = el.get("rend", "")
        return f"<strong>{inner}</strong>" if "b" in rend else f"<em>{inner}</em>"
    if tag == "lb":
        return "<br>"
    return inner


@dataclass(frozen=True)
class PageImport:
    page: ExtractedPage
    item: NewsItem
    outcome: Outcome


@dataclass(frozen=True)
class PageChoices:
    """What staff say about an imported page: its section, and a title or date to use instead
    of the extracted ones (None: the page's own)."""

    category: str = ""
    title: str | None = None
    published: datetime | None = None


def import_page(
    session: Session,
    url: str,
    chosen: PageChoices,
    *,
    tz: ZoneInfo,
    limits: FetchLimits | None = None,
) -> PageImport:
    """Fetch one article page, extract it and store it as an item (re-importing updates it)."""
    fetched = fetch_url(url, limits=limits, accept=ACCEPT_PAGE)
    ctype = fetched.content_type.lower()
    if _FEEDISH.match(fetched.content[:4096]) or any(t in ctype for t in ("rss", "atom", "rdf")):
        raise FeedError(
            f"{fetched.url} is a feed, not an article page",
            hint=f"Import its items with `digest news import {url}`, or follow it with "
            f"`digest feeds add {url}`.",
        )
    if ctype and "html" not in ctype and "xml" not in ctype:
        raise FeedError(
            f"{fetched.url} is not a web page ({ctype.split(';')[0]})",
            hint="Give the address of an HTML article page.",
        )
    page = extract_page(_decode(fetched.content, ctype), url=fetched.url, tz=tz)
    if chosen.title is not None:
        page = replace(page, title=clean_text(chosen.title))
    if chosen.published is not None:
        page = replace(page, published=chosen.published, date_from="--published")
    raw = ItemInput(
        title=page.title,
        url=page.url,
        summary=page.summary_html,
        published=page.published,
        category=chosen.category,
        source=f"page:{page.url}"[:200],
        key=item_key(page.url),
    )
    try:
        item, outcome = upsert_item(session, raw)
    except ValueError as exc:
        raise FeedError(f"cannot store the page as an item: {exc}") from None
    return PageImport(page, item, outcome)


def _decode(content: bytes, ctype: str) -> bytes | str:
    """Text when the server names its charset (the page's own <meta> may disagree)."""
    m = re.search(r"charset=[\"']?([\w.:-]+)", ctype)
    if m:
        try:
            return content.decode(m.group(1), errors="replace")
        except LookupError:
            pass
    return content
