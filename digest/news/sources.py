"""The sources table: feeds to fetch, fetched concurrently, each failure recorded on its source.

Network work runs in a bounded thread pool with no database session involved; the results
are then stored one source at a time in a savepoint, so a source that fails (or whose items
cannot be stored) leaves every stored item and every other source as they were.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

import httpx
from sqlmodel import Session, col, func, select

from digest.db import count_by
from digest.errors import NotFoundError, UsageError
from digest.models import NewsItem, Source, SourceStatus, utcnow
from digest.news.feeds import ParsedFeed, StoreReport, feed_label, parse_feed, store_items
from digest.news.fetch import (
    FetchError,
    FetchLimits,
    FetchResult,
    check_fetch_url,
    fetch_url,
    make_client,
    run_pool,
)
from digest.news.normalise import clean_text


@dataclass(frozen=True)
class _Job:
    name: str
    url: str
    category: str
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True)
class _Read:
    """What fetching and parsing one source gave: a feed, a 304, or an error."""

    fetched: FetchResult | None = None
    feed: ParsedFeed | None = None
    error: FetchError | None = None


@dataclass
class SourceResult:
    name: str
    url: str
    status: SourceStatus
    report: StoreReport = field(default_factory=StoreReport)
    error: str = ""
    hint: str | None = None
    warnings: list[str] = field(default_factory=list)
    consecutive_failures: int = 0
    feed_title: str = ""
    version: str = ""
    entries: int = 0
    final_url: str = ""

    @property
    def failed(self) -> bool:
        return self.status == SourceStatus.error

    @property
    def noteworthy(self) -> bool:
        """Worth a line in a quiet (cron) run: something new, changed or wrong."""
        r = self.report
        return bool(self.failed or self.warnings or r.new or r.updated)


def list_sources(session: Session) -> list[tuple[Source, int]]:
    """Every source with the number of stored items it brought, by name."""
    counts = count_by(session, NewsItem.source)
    sources = session.exec(select(Source).order_by(col(Source.name))).all()
    return [(s, int(counts.get(s.name, 0))) for s in sources]


def get_source(session: Session, name_or_url: str) -> Source:
    wanted = name_or_url.strip()
    found = session.exec(select(Source).where(Source.name == wanted)).first()
    found = found or session.exec(select(Source).where(Source.url == wanted)).first()
    if found is None:
        raise NotFoundError(
            f"no source named or at {wanted!r}", hint="`digest feeds list` shows the sources."
        )
    return found


def add_source(
    session: Session,
    *,
    url: str,
    name: str | None = None,
    category: str = "",
    limits: FetchLimits | None = None,
) -> SourceResult:
    """Fetch `url` once; if it is a readable feed, add it as a source and store its items.

    Nothing is stored when the fetch fails: the error says why.
    """
    url = check_fetch_url(url)
    existing = session.exec(select(Source).where(Source.url == url)).first()
    if existing is not None:
        raise UsageError(f"{url} is already a source, named {existing.name!r}")
    category = clean_text(category, limit=100)
    name = clean_text(name, limit=200) if name is not None else None
    if name == "":
        raise UsageError("--name cannot be empty")
    if name is not None:
        _check_name_free(session, name)
    read = _read(_Job(name or url, url, category, None, None), limits or FetchLimits(), None)
    if read.error is not None:
        raise read.error
    assert read.feed is not None
    if name is None:
        name = read.feed.title or (urlsplit(url).hostname or url)
        _check_name_free(session, name)
    source = Source(name=name, url=url, category=category)
    session.add(source)
    session.flush()
    read.feed.items = [replace(item, source=name) for item in read.feed.items]
    return _apply(session, source, read)


def _check_name_free(session: Session, name: str) -> None:
    if session.exec(select(Source).where(Source.name == name)).first() is not None:
        raise UsageError(
            f"there is already a source named {name!r}",
            hint="Choose another with --name.",
        )


def remove_source(session: Session, name_or_url: str) -> tuple[Source, int]:
    """Remove a source; the items it brought stay. Returns it and that item count."""
    source = get_source(session, name_or_url)
    kept = session.exec(select(func.count()).where(NewsItem.source == source.name)).one()
    session.delete(source)
    session.flush()
    return source, int(kept)


def fetch_sources(
    session: Session, *, names: Sequence[str] = (), limits: FetchLimits | None = None
) -> list[SourceResult]:
    """Fetch every source (or those named), store new and changed items, record each outcome.

    Never raises for a source that fails: its result says why and the others are fetched.
    """
    limits = limits or FetchLimits()
    if names:
        sources = [get_source(session, n) for n in dict.fromkeys(names)]
    else:
        sources = list(session.exec(select(Source).order_by(col(Source.name))).all())
    if not sources:
        return []
    jobs = [_Job(s.name, s.url, s.category, s.etag, s.last_modified) for s in sources]
    with make_client(limits) as client:
        reads = run_pool(lambda job: _read(job, limits, client), jobs, limits.workers)
    return [_apply(session, s, r) for s, r in zip(sources, reads, strict=True)]


def _read(job: _Job, limits: FetchLimits, client: httpx.Client | None) -> _Read:
    """Fetch and parse one source; every failure comes back as a value, never raised."""
    try:
        fetched = fetch_url(
            job.url, limits=limits, client=client, etag=job.etag, last_modified=job.last_modified
        )
        if fetched.not_modified:
            return _Read(fetched=fetched)
        feed = parse_feed(
            fetched.content, url=fetched.url, content_type=fetched.content_type,
            source=job.name, category=job.category,
        )  # fmt: skip
        return _Read(fetched=fetched, feed=feed)
    except FetchError as exc:
        return _Read(error=exc)
    except Exception as exc:  # a parser bug must not stop the other sources
        return _Read(error=FetchError(f"unexpected {type(exc).__name__} reading the feed: {exc}"))


def _apply(session: Session, source: Source, read: _Read) -> SourceResult:
    """Record one source's outcome and store its items, all in one savepoint."""
    now = utcnow()
    result = SourceResult(name=source.name, url=source.url, status=SourceStatus.ok)
    feed = read.feed
    if read.error is None and feed is not None:
        try:
            with session.begin_nested():
                report = store_items(session, feed.items, owners={feed_label(source.url)})
        except Exception as exc:  # the database refused: the source failed, its items stand
            read = _Read(
                error=FetchError(f"could not store the items: {type(exc).__name__}: {exc}")
            )
        else:
            report.skipped[:0] = feed.skipped
            result.report = report
    source.last_fetch_at = now
    if read.error is not None:
        source.last_status = SourceStatus.error
        source.last_error = read.error.message[:500]
        source.consecutive_failures += 1
        result.status = SourceStatus.error
        result.error, result.hint = read.error.message, read.error.hint
    else:
        assert read.fetched is not None
        source.last_success_at = now
        source.consecutive_failures = 0
        result.final_url = read.fetched.url
        if read.feed is None:
            source.last_status = SourceStatus.not_modified
            source.last_error = ""
            result.status = SourceStatus.not_modified
        else:
            feed = read.feed
            result.warnings = list(feed.warnings)
            result.feed_title, result.version = feed.title, feed.version
            result.entries = feed.entry_count
            source.title = feed.title[:500]
            source.item_count = feed.entry_count
            source.last_new = result.report.new
            status = SourceStatus.warning if feed.warnings else SourceStatus.ok
            source.last_status = result.status = status
            source.last_error = "; ".join(feed.warnings)[:500]
            # Only now that its items are stored may a 304 stand for this version of the feed.
            etag, modified = read.fetched.etag, read.fetched.last_modified
            source.etag = etag[:500] if etag else None
            source.last_modified = modified[:100] if modified else None
    result.consecutive_failures = source.consecutive_failures
    session.add(source)
    session.flush()
    return result
