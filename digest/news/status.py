"""Where each stored item stands for the next issue: `digest news list` with its status column.

`next` the next issue takes it (what `digest preview` would show now); `held` and `removed`
staff keep it out; `sent in #12` an issue carried it; `too old` its date is before the
period of the next issue (`digest news include` takes it all the same); `later` its date is
after now."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from digest.config import Settings
from digest.issues.select import default_window, select_items
from digest.models import Issue, IssueItem, IssueStatus, NewsItem, utcnow
from digest.news.control import HELD, INCLUDED, REMOVED, Controlled, Decision, control_item
from digest.news.items import list_items

StatusFilter = Literal["next", "held", "removed", "sent", "too-old", "later"]
STATUS_FILTERS: tuple[str, ...] = ("next", "held", "removed", "sent", "too-old", "later")
RECORD_FIELDS = ("id", "status", "included", "published", "category", "title", "url", "source",
                 "decided_by", "decided_at", "reason", "edited")  # fmt: skip


@dataclass(frozen=True)
class ItemStatus:
    item: NewsItem
    status: str  # "next", "held", "removed", "sent in #12", "too old", "later"
    kind: str  # the filter it answers to: one of STATUS_FILTERS
    issue_number: int | None = None

    @property
    def included(self) -> bool:
        return self.item.control == INCLUDED


def _issue_words(number: int, status: str) -> str:
    if status in (IssueStatus.sent, IssueStatus.sent_with_failures, IssueStatus.sending):
        return f"sent in #{number}"
    return f"{status} in #{number}"


def item_statuses(
    session: Session,
    settings: Settings,
    *,
    since: datetime | None = None,
    only: str | None = None,
    now: datetime | None = None,
) -> list[ItemStatus]:
    """Every item (published since `since`), newest first, with its status for the next issue
    (the default period, as `digest preview` would make it now); `only` one kind."""
    now = now or utcnow()
    start, until = default_window(session, settings, now)
    chosen = {
        i.id
        for i in select_items(session, start, until, late=timedelta(days=settings.lookback_days))
    }
    carried: dict[int, tuple[int, str]] = {}
    for item_id, number, status in session.exec(
        select(IssueItem.news_item_id, Issue.number, Issue.status)
        .join(Issue, col(Issue.id) == col(IssueItem.issue_id))
        .where(col(IssueItem.news_item_id).is_not(None))
        .order_by(col(Issue.number).desc())
    ).all():
        assert item_id is not None
        carried[item_id] = (number, status)  # the earliest issue wins (descending order)
    out = []
    for item in list_items(session, since=since):
        out.append(_status(item, chosen, carried, until))
    return [s for s in out if only is None or s.kind == only]


def _status(
    item: NewsItem, chosen: set[int | None], carried: dict[int, tuple[int, str]], until: datetime
) -> ItemStatus:
    if item.id in carried:
        number, status = carried[item.id]
        return ItemStatus(item, _issue_words(number, status), "sent", number)
    if item.control == REMOVED:
        return ItemStatus(item, "removed", "removed")
    if item.control == HELD:
        return ItemStatus(item, "held", "held")
    if item.id in chosen:
        return ItemStatus(item, "next", "next")
    if item.published_at >= until:
        return ItemStatus(item, "later", "later")
    return ItemStatus(item, "too old", "too-old")


def _local(moment: datetime | None, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M") if moment else ""


def status_records(rows: Sequence[ItemStatus], tz: ZoneInfo) -> list[dict[str, object]]:
    """The rows as plain records (for CSV and JSON), times in the newsletter's time zone:
    the item, its status and staff's last decision about it (who, when, why)."""
    return [
        {
            "id": r.item.id,
            "status": r.status,
            "included": r.included,
            "published": _local(r.item.published_at, tz),
            "category": r.item.category,
            "title": r.item.title,
            "url": r.item.url,
            "source": r.item.source,
            "decided_by": r.item.control_by,
            "decided_at": _local(r.item.control_at, tz),
            "reason": r.item.control_reason,
            "edited": r.item.edited,
        }
        for r in rows
    ]


def status_of(session: Session, settings: Settings, item: NewsItem) -> ItemStatus:
    """One item's status for the next issue."""
    for row in item_statuses(session, settings):
        if row.item.id == item.id:
            return row
    raise LookupError(item.id)  # an item we just read is always listed


def decide(
    session: Session, settings: Settings, ref: str, decision: Decision
) -> tuple[Controlled, ItemStatus]:
    """A staff decision about an item (news/control.py), and where the item stands after it."""
    done = control_item(session, ref, decision)
    return done, status_of(session, settings, done.item)
