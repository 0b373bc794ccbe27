"""RSS and Atom feeds: bytes → feedparser → one item shape → stored on the item's stable key.

Parsing never touches the network or the file system: feedparser only ever sees bytes we
fetched with our own limits (see fetch.py). Storing reuses items.upsert_item, so fetching a
feed twice is a no-op and an item that changed at its source is updated.
"""

from __future__ import annotations

import calendar
import hashlib
import html
import io
import re
import xml.sax
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import feedparser
import sqlalchemy as sa
from sqlmodel import Session, col, select

from digest.models import NewsItem, SourceEntry, utcnow
from digest.news.fetch import FetchError, FetchLimits, FetchResult, fetch_url
from digest.news.items import ImportReport, ItemInput, import_items, upsert_item
from digest.news.normalise import check_url, clean_text, fallback_key, item_key, sanitise_html

VERSIONS = {
    "rss090": "RSS 0.90", "rss091n": "RSS 0.91", "rss091u": "RSS 0.91", "rss092": "RSS 0.92",
    "rss093": "RSS 0.93", "rss094": "RSS 0.94", "rss10": "RSS 1.0", "rss20": "RSS 2.0",
    "rss": "RSS", "atom01": "Atom 0.1", "atom02": "Atom 0.2", "atom03": "Atom 0.3",
    "atom10": "Atom 1.0", "atom": "Atom", "cdf": "CDF", "json1": "JSON Feed 1",
}  # fmt: skip

# An internal DTD subset that declares entities: the shape of "billion laughs" and of
# external-entity attacks. Real feeds never need one, so it is refused before parsing.
_DOCTYPE_SUBSET = re.compile(rb"<!DOCTYPE[^>\[]*\[", re.IGNORECASE)
_SUBSET_END = re.compile(rb"\]\s*>")
_HTML_START = re.compile(rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html[\s>]|head[\s>]|body[\s>])",
                         re.IGNORECASE | re.DOTALL)  # fmt: skip
# A date further ahead than this is a source's mistake: the item counts as undated.
FUTURE_SLACK = timedelta(days=1)


class FeedError(FetchError):
    """The bytes are not a feed we can read (an HTML page, a bomb, garbage)."""


@dataclass
class ParsedFeed:
    title: str
    link: str
    version: str  # e.g. "RSS 2.0"
    items: list[ItemInput]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (entry, reason)
    warnings: list[str] = field(default_factory=list)

    @property
    def entry_count(self) -> int:
        return len(self.items) + len(self.skipped)


@dataclass
class StoreReport:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    elsewhere: int = 0  # already stored from another source (same canonical link): left as is
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def describe(self) -> str:
        parts = [f"{self.new} new", f"{self.updated} updated", f"{self.unchanged} unchanged"]
        if self.elsewhere:
            parts.append(f"{self.elsewhere} already from another source")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        return ", ".join(parts)


# parsing ----------------------------------------------------------------------------------


def parse_feed(
    content: bytes,
    *,
    url: str,
    content_type: str = "",
    source: str,
    category: str = "",
    now: datetime | None = None,
) -> ParsedFeed:
    """Read RSS 0.9x/1.0/2.0 or Atom from `content` fetched from `url`. Raises FeedError.

    Malformed XML is read as far as feedparser's lenient parser gets, with a warning.
    An entry with an id (guid) but no link (status pages, some podcasts) is kept, keyed on
    the feed and its id, and linked to the feed's own page when it names one. Entries
    without a title, or with neither a link nor an id, are skipped with a reason.
    """
    now = now or utcnow()
    if _declares_entities(content):
        raise FeedError(
            "the feed declares XML entities (the shape of an entity-expansion attack); refused",
            hint="Real feeds never need this. Ask the site to fix the feed, or remove the source.",
        )
    web = urlsplit(url).scheme in ("http", "https")
    headers = {"content-type": content_type or "application/xml"}
    if web:
        headers["content-location"] = url  # the base for relative links, unless xml:base says more
    # A file-like object: given bytes, feedparser would try them as a file name first.
    parsed = feedparser.parse(io.BytesIO(content), response_headers=headers)
    version = str(parsed.get("version") or "")
    entries = list(parsed.get("entries") or [])
    exc = parsed.get("bozo_exception")
    if not version and not entries:
        if "html" in content_type.lower() or _HTML_START.match(content[:4096]):
            raise FeedError(
                f"{url} is a web page, not an RSS or Atom feed", hint=_html_hint(parsed, url)
            )
        reason = f" ({_describe_bozo(exc)})" if exc else ""
        raise FeedError(
            f"{url} is not an RSS or Atom feed{reason}",
            hint="Check the address: it should be the feed itself "
            "(often ending in /feed, .rss or .xml).",
        )
    feed_meta = parsed.get("feed") or {}
    link = str(feed_meta.get("link") or "")
    base = url if web else (link if urlsplit(link).scheme in ("http", "https") else None)
    try:  # where a link-less entry points: the feed's own page (the site), when it has one
        page = check_url(link, base=base) if link.strip() else ""
    except ValueError:
        page = ""
    out = ParsedFeed(
        title=clean_text(str(feed_meta.get("title") or ""), limit=500),
        link=link,
        version=VERSIONS.get(version, version or "an unknown feed format"),
        items=[],
    )
    if exc is not None and isinstance(exc, xml.sax.SAXException):
        out.warnings.append(
            f"the feed is not well-formed XML ({_describe_bozo(exc)}); "
            f"stored what could be read ({len(entries)} entr{'y' if len(entries) == 1 else 'ies'})"
        )
    candidates: list[tuple[str, ItemInput, str]] = []  # (where, item, guid)
    for n, entry in enumerate(entries, 1):
        where = f"entry {n}"
        try:
            item, guid = _entry_item(
                entry, base=base, source=source, category=category, now=now,
                page=page, feed_url=url,
            )  # fmt: skip
        except ValueError as err:
            title = clean_text(str(entry.get("title") or ""), limit=60)
            out.skipped.append((f"{where}{f' ({title})' if title else ''}", str(err)))
            continue
        candidates.append((where, item, guid))
    out.items = _with_keys(candidates, feed_url=url)
    return out


def _declares_entities(content: bytes) -> bool:
    """Whether the DTD's internal subset declares entities (one linear scan, no backtracking)."""
    start = _DOCTYPE_SUBSET.search(content, 0, 65_536)  # the prolog comes before the root
    if start is None:
        return False
    end = _SUBSET_END.search(content, start.end())
    subset = content[start.end() : end.start() if end else len(content)]
    return b"<!entity" in subset.lower()


def _entry_item(
    entry: Any,
    *,
    base: str | None,
    source: str,
    category: str,
    now: datetime,
    page: str = "",
    feed_url: str = "",
) -> tuple[ItemInput, str]:
    title = str(entry.get("title") or "")
    if not clean_text(title):
        raise ValueError("it has no title")
    guid = str(entry.get("id") or "").strip()
    # FeedBurner and similar proxies keep the publisher's own link here.
    link = str(entry.get("feedburner_origlink") or entry.get("link") or "")
    key = None
    if link.strip():
        url = check_url(link, base=base)
    elif guid:  # no link of its own: keyed on the feed and its id, linked to the feed's page
        url, key = page, guid_key(feed_url, guid)
    else:
        raise ValueError("it has neither a link nor an id")
    return (
        ItemInput(
            title=title,
            url=url,
            summary=_summary_html(entry, base=base or url),
            published=_entry_date(entry, now),
            category=category,
            source=source,
            key=key,
        ),
        guid,
    )


def guid_key(feed_url: str, guid: str) -> str:
    """The key of an entry known by its feed and its id (no link, or a link it shares)."""
    return "guid:" + hashlib.sha256(f"{feed_url}\n{guid}".encode()).hexdigest()


def _summary_html(entry: Any, *, base: str) -> str:
    # feedparser copies Atom <content> into `summary` without its type: take the type from
    # wherever the text came from, so plain text is escaped rather than parsed as HTML.
    content = (entry.get("content") or [{}])[0]
    detail = entry.get("summary_detail") or content
    value = str(entry.get("summary") or "") or str(content.get("value") or "")
    kind = str(detail.get("type") or "text/html")
    if not value:
        return ""
    if "html" not in kind:
        paras = [p.strip() for p in re.split(r"\n\s*\n", value) if p.strip()]
        value = "".join(f"<p>{html.escape(p, quote=False)}</p>" for p in paras)
    # Links are made absolute against the feed (not the item), as a feed reader would.
    return sanitise_html(value, base_url=base)


def _entry_date(entry: Any, now: datetime) -> datetime | None:
    for name in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(name)
        if parsed:
            try:  # feedparser gives UTC struct_time
                moment = datetime.fromtimestamp(calendar.timegm(parsed), UTC)
            except (TypeError, ValueError, OverflowError, OSError):
                continue
            return None if moment > now + FUTURE_SLACK else moment
    return None


def _with_keys(candidates: list[tuple[str, ItemInput, str]], *, feed_url: str) -> list[ItemInput]:
    """Each item's stable key.

    The canonical link, so the same article through two sources (or added by hand) is one
    item. When several entries of one feed share a link (a feed whose entries all point at
    its home page), the link does not tell them apart: those are keyed on the feed and their
    guid, or a hash of title and date when they have none.
    """
    linked = [(item, guid) for _, item, guid in candidates if item.key is None]
    links = Counter(item_key(item.url) for item, _ in linked)
    guids_per_link: dict[str, set[str]] = {}
    for item, guid in linked:
        guids_per_link.setdefault(item_key(item.url), set()).add(guid)
    out = []
    for _, item, guid in candidates:
        if item.key is not None:  # a link-less entry, keyed on its id already
            out.append(replace(item, guid=guid))
            continue
        key = item_key(item.url)
        if links[key] > 1 and len(guids_per_link[key]) > 1:
            if guid:
                key = guid_key(feed_url, guid)
            else:
                when = item.published.isoformat() if item.published else ""
                key = fallback_key(clean_text(item.title), when)
        out.append(replace(item, key=key, guid=guid or ""))
    return out


def _describe_bozo(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    if isinstance(exc, xml.sax.SAXParseException):
        return f"line {exc.getLineNumber()}: {exc.getMessage()}"
    return str(exc) or type(exc).__name__


def _html_hint(parsed: Any, url: str) -> str:
    feed_types = ("application/rss+xml", "application/atom+xml", "application/rdf+xml")
    for link in (parsed.get("feed") or {}).get("links", []):
        if link.get("rel") == "alternate" and link.get("type") in feed_types and link.get("href"):
            try:
                href = check_url(str(link["href"]), base=url)
            except ValueError:
                continue
            return (
                f"The page links to a feed: {href} (use that). To store this page itself as "
                "one item, use `digest news import-page URL`."
            )
    return (
        "Find the site's RSS or Atom feed (often linked as 'RSS' or ending in /feed or .xml), "
        "or store one article page as an item with `digest news import-page URL`."
    )


# storing ----------------------------------------------------------------------------------


def store_items(
    session: Session, items: Iterable[ItemInput], *, owners: Iterable[str] = ()
) -> StoreReport:
    """Upsert each item in its own savepoint; a bad item is skipped, the others are kept.

    An item already stored from another source (the same canonical link) is left alone,
    so two feeds carrying one article neither duplicate it nor keep overwriting each other.
    `owners` are other labels that count as this source (e.g. an earlier one-off import).
    """
    report = StoreReport()
    for n, item in enumerate(items, 1):
        mine = {item.source, *owners}
        guid_hash = hashlib.sha256(item.guid.encode()).hexdigest() if item.guid else ""
        if guid_hash:
            # This source's entry became an item before: the same item, even if its link moved.
            known = session.exec(
                select(NewsItem)
                .join(SourceEntry, col(SourceEntry.news_item_id) == col(NewsItem.id))
                .where(SourceEntry.source == item.source, SourceEntry.guid_hash == guid_hash)
            ).first()
            if known is not None and known.key != item.key:
                item = replace(item, key=known.key)
        existing = session.exec(select(NewsItem).where(NewsItem.key == item.key)).first()
        if existing is not None and existing.source not in mine:
            report.elsewhere += 1
            continue
        try:
            with session.begin_nested():
                stored, outcome = upsert_item(session, item, keep_edited=True)
                if guid_hash and stored.id is not None:
                    _remember_entry(session, item.source, guid_hash, stored.id)
        except ValueError as err:
            report.skipped.append((f"item {n} ({clean_text(item.title, limit=60)})", str(err)))
            continue
        except sa.exc.IntegrityError:
            # Another fetch stored the same key a moment ago: it is there, which is what we want.
            report.unchanged += 1
            continue
        setattr(report, outcome, getattr(report, outcome) + 1)
    return report


def _remember_entry(session: Session, source: str, guid_hash: str, item_id: int) -> None:
    found = session.exec(
        select(SourceEntry).where(SourceEntry.source == source, SourceEntry.guid_hash == guid_hash)
    ).first()
    if found is None:
        session.add(SourceEntry(source=source, guid_hash=guid_hash, news_item_id=item_id))
        session.flush()


@dataclass(frozen=True)
class FeedImport:
    feed: ParsedFeed
    report: StoreReport
    fetched: FetchResult | None


def import_feed_url(
    session: Session, url: str, *, category: str = "", limits: FetchLimits | None = None
) -> FeedImport:
    """One-off: fetch a feed and store its items (`digest news import URL`)."""
    fetched = fetch_url(url, limits=limits)
    label = feed_label(url)
    feed = parse_feed(
        fetched.content, url=fetched.url, content_type=fetched.content_type, source=label,
        category=category,
    )  # fmt: skip
    report = store_items(session, feed.items)
    report.skipped[:0] = feed.skipped
    return FeedImport(feed, report, fetched)


def import_feed_file(
    session: Session, path: Path, *, category: str = "", limits: FetchLimits | None = None
) -> FeedImport:
    """One-off: store the items of an RSS/Atom file (relative links need the feed's <link>)."""
    limits = limits or FetchLimits()
    try:
        with path.open("rb") as fh:
            content = fh.read(limits.max_bytes + 1)
    except OSError as exc:
        raise FeedError(f"cannot read {path}: {exc.strerror}") from None
    if len(content) > limits.max_bytes:
        raise FeedError(f"{path} is larger than the {limits.max_bytes // 1024:,} KB limit")
    feed = parse_feed(content, url=str(path), source=f"file:{path.name}", category=category)
    report = store_items(session, feed.items)
    report.skipped[:0] = feed.skipped
    return FeedImport(feed, report, None)


def feed_label(url: str) -> str:
    """The `source` of items from a one-off feed import."""
    return f"feed:{url}"[:200]


def looks_like_feed(path: Path) -> bool:
    """A feed file (not JSON or CSV) by its name or first bytes."""
    if path.suffix.lower() in (".xml", ".rss", ".atom", ".rdf"):
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError:
        return False
    return head.startswith(b"<")


def summarise_skipped(skipped: Sequence[tuple[str, str]]) -> list[str]:
    return [f"{where}: skipped, {reason}" for where, reason in skipped]


def import_news(
    session: Session, source: str, tz: ZoneInfo, *, limits: FetchLimits | None = None
) -> FeedImport | ImportReport:
    """`digest news import SOURCE`: a feed's URL, an RSS/Atom file, or a JSON or CSV file of
    items (re-importing updates, never duplicates)."""
    if source.strip().lower().startswith(("http://", "https://")):
        return import_feed_url(session, source, limits=limits)
    path = Path(source)
    if path.is_file() and looks_like_feed(path):
        return import_feed_file(session, path)
    return import_items(session, path, tz)
