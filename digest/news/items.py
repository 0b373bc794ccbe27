"""Storing news items: upsert on the item's stable key, so adding the same item twice is a no-op."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from digest.dates import parse_when
from digest.errors import UsageError
from digest.models import NewsItem, utcnow
from digest.news.normalise import check_url, clean_text, html_to_text, item_key, sanitise_html

Outcome = Literal["new", "updated", "unchanged"]


@dataclass(frozen=True)
class ItemInput:
    """An item as it arrives, before it is trusted."""

    title: str
    url: str
    summary: str = ""
    published: datetime | None = None
    category: str = ""
    source: str = "manual"
    key: str | None = None
    guid: str = ""  # the feed's id for this entry, when it came from a feed


def normalise_item(raw: ItemInput) -> dict[str, Any]:
    """The stored fields of an item; ValueError with a reason when it cannot be used."""
    title = clean_text(raw.title)
    if not title:
        raise ValueError("the title is empty")
    url = check_url(raw.url)
    summary_html = sanitise_html(raw.summary, base_url=url)
    return {
        "key": raw.key or item_key(url),
        "title": title,
        "url": url,
        "summary_html": summary_html,
        "summary_text": html_to_text(summary_html, width=0),
        "category": clean_text(raw.category, limit=100),
        "source": raw.source[:200],
        "published_at": raw.published,
    }


def upsert_item(session: Session, raw: ItemInput) -> tuple[NewsItem, Outcome]:
    """Insert or update by key. An item's first-seen time stands in for a missing date."""
    fields = normalise_item(raw)
    existing = session.exec(select(NewsItem).where(NewsItem.key == fields["key"])).first()
    now = utcnow()
    if existing is None:
        fields["published_at"] = fields["published_at"] or now
        item = NewsItem(**fields, created_at=now, updated_at=now)
        session.add(item)
        session.flush()
        return item, "new"
    if fields["published_at"] is None:
        fields["published_at"] = existing.published_at
    changed = False
    fields.pop("source")  # an item keeps the source it was first seen in
    for name, value in fields.items():
        if getattr(existing, name) != value:
            setattr(existing, name, value)
            changed = True
    if not changed:
        return existing, "unchanged"
    existing.updated_at = now
    session.add(existing)
    session.flush()
    return existing, "updated"


def list_items(
    session: Session, *, since: datetime | None = None, until: datetime | None = None
) -> Sequence[NewsItem]:
    query = select(NewsItem).order_by(col(NewsItem.published_at).desc(), col(NewsItem.id))
    if since is not None:
        query = query.where(NewsItem.published_at >= since)
    if until is not None:
        query = query.where(NewsItem.published_at < until)
    return session.exec(query).all()


@dataclass
class ImportReport:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)


def _records_from_file(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(where, record) pairs from a JSON list or a CSV with a header row."""
    try:
        content = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if path.suffix.lower() == ".json" or content.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(content)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path} is not valid JSON: {exc}") from None
        if isinstance(data, dict) and isinstance(data.get("items"), list):
            data = data["items"]
        if not isinstance(data, list):
            raise UsageError(f'{path}: expected a JSON list of items (or {{"items": [...]}})')
        return [(f"item {i}", rec) for i, rec in enumerate(data, 1)]
    if path.suffix.lower() in (".xml", ".rss", ".atom"):
        raise UsageError(
            f"{path} looks like a feed; this version imports JSON and CSV files",
        )
    reader = csv.DictReader(io.StringIO(content, newline=""))
    try:
        rows = [(f"line {reader.line_num}", dict(row)) for row in reader]
    except csv.Error as exc:
        raise UsageError(f"{path} is not valid CSV: {exc}") from None
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    if "title" not in fields or "url" not in fields:
        raise UsageError(
            f"{path} needs 'title' and 'url' columns (found: {', '.join(fields) or 'none'})",
            hint="Columns: title,url,summary,published,category",
        )
    return rows


def import_items(
    session: Session, path: Path, tz: ZoneInfo, source: str | None = None
) -> ImportReport:
    report = ImportReport()
    for where, rec in _records_from_file(path):
        if not isinstance(rec, dict):
            report.rejected.append((where, "not an object with title and url"))
            continue
        rec = {str(k).strip().lower(): v for k, v in rec.items() if k is not None}
        try:
            published = rec.get("published") or rec.get("date")
            when = parse_when(str(published), tz) if published else None
            raw = ItemInput(
                title=str(rec.get("title") or ""),
                url=str(rec.get("url") or rec.get("link") or ""),
                summary=str(rec.get("summary") or ""),
                published=when,
                category=str(rec.get("category") or ""),
                source=source or f"file:{path.name}",
            )
            with session.begin_nested():
                _, outcome = upsert_item(session, raw)
        except ValueError as exc:
            report.rejected.append((where, str(exc)))
            continue
        setattr(report, outcome, getattr(report, outcome) + 1)
    return report
