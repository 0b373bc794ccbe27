"""Storing news items: upsert on the item's stable key, so adding the same item twice is a no-op."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from digest.dates import parse_when
from digest.errors import UsageError
from digest.models import NewsItem, utcnow
from digest.news.categories import canonical_category
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


# What staff call each stored field (in messages such as "summary, category changed").
FIELD_WORDS = {
    "title": "title",
    "url": "link",
    "summary_html": "summary",
    "category": "category",
    "published_at": "date",
}
# The stored fields each input sets.
_INPUT_FIELDS = {
    "title": ("title",),
    "url": ("url",),
    "summary": ("summary_html", "summary_text"),
    "category": ("category",),
    "published": ("published_at",),
}


def normalise_item(raw: ItemInput) -> dict[str, Any]:
    """The stored fields of an item; ValueError with a reason when it cannot be used.

    A feed entry with an id but no link may have no link at all (`key` is then its id)."""
    title = clean_text(raw.title)
    if not title:
        raise ValueError("the title is empty")
    url = check_url(raw.url) if (raw.url.strip() or not raw.key) else ""
    summary_html = sanitise_html(raw.summary, base_url=url or None)
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


@dataclass(frozen=True)
class Saved:
    item: NewsItem
    outcome: Outcome
    changed: tuple[str, ...] = ()  # the staff words of the fields that changed ("summary")


def save_item(
    session: Session,
    raw: ItemInput,
    *,
    given: Collection[str] | None = None,
    keep_edited: bool = False,
    by_staff: bool = False,
) -> Saved:
    """Insert or update by key. An item's first-seen time stands in for a missing date.

    `given`: the inputs ("summary", "category", "published" …) that may change an existing
    item (None: all); the others keep their stored values. `keep_edited` (a feed's fetch):
    the fields staff edited stay as they are. `by_staff`: the changed fields are marked edited.
    """
    fields = normalise_item(raw)
    existing = session.exec(select(NewsItem).where(NewsItem.key == fields["key"])).first()
    fields["category"] = canonical_category(
        session, fields["category"], exclude_id=existing.id if existing else None
    )
    now = utcnow()
    if existing is None:
        fields["published_at"] = fields["published_at"] or now
        item = NewsItem(**fields, created_at=now, updated_at=now)
        session.add(item)
        session.flush()
        return Saved(item, "new")
    if fields["published_at"] is None:
        fields["published_at"] = existing.published_at
    fields.pop("source")  # an item keeps the source it was first seen in
    fields.pop("key")
    allowed = set(fields) if given is None else {f for g in given for f in _INPUT_FIELDS[g]}
    edited = set(filter(None, existing.edited.split(",")))
    changed: list[str] = []
    for name, value in fields.items():
        if name not in allowed or (keep_edited and FIELD_WORDS.get(name, "summary") in edited):
            continue
        if getattr(existing, name) != value:
            setattr(existing, name, value)
            changed.append(FIELD_WORDS.get(name, "summary"))
    if not changed:
        return Saved(existing, "unchanged")
    words = tuple(dict.fromkeys(changed))
    if by_staff:
        existing.edited = ",".join(sorted(edited | set(words)))[:200]
    existing.updated_at = now
    session.add(existing)
    session.flush()
    return Saved(existing, "updated", words)


def upsert_item(
    session: Session, raw: ItemInput, *, keep_edited: bool = False
) -> tuple[NewsItem, Outcome]:
    """Insert or update by key, every field (see save_item)."""
    saved = save_item(session, raw, keep_edited=keep_edited)
    return saved.item, saved.outcome


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
            # an empty or missing cell keeps what an existing item has (never wipes it)
            given = {"title", "url"} | {
                name for name, value in (("summary", raw.summary), ("category", raw.category),
                                         ("published", raw.published)) if value
            }  # fmt: skip
            with session.begin_nested():
                outcome = save_item(session, raw, given=given).outcome
        except ValueError as exc:
            report.rejected.append((where, str(exc)))
            continue
        setattr(report, outcome, getattr(report, outcome) + 1)
    return report
