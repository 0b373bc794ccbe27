"""What staff decide about stored items: edit one, remove it (for good, undoable), hold it
back until released, or include it in the next issue whatever its date.

The decision is stored on the item (`control`, who, when, why); selection (issues/select.py)
reads it through `control_filter`. An item already in an issue stays as it was sent."""

from __future__ import annotations

import getpass
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import Session, col, select

from digest.errors import NotFoundError, UsageError
from digest.models import Issue, IssueItem, NewsItem, utcnow
from digest.news.items import ItemInput, Saved, save_item
from digest.news.normalise import check_url, item_key

Action = Literal["remove", "restore", "hold", "release", "include"]
HELD, REMOVED, INCLUDED = "held", "removed", "included"

# action -> (the control it sets, the controls it may be taken from, the past tense)
_ACTIONS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "remove": (REMOVED, ("", HELD, INCLUDED), "Removed"),
    "restore": ("", (REMOVED,), "Restored"),
    "hold": (HELD, ("", INCLUDED), "Held back"),
    "release": ("", (HELD, INCLUDED), "Released"),
    "include": (INCLUDED, ("", HELD), "Included"),
}
_PARTICIPLE = {"remove": "removed", "restore": "restored", "hold": "held",
               "release": "released", "include": "included"}  # fmt: skip
_UNDO = {REMOVED: "restore", HELD: "release", INCLUDED: "release"}


def control_filter() -> Any:
    """The SQL condition for items an issue may take: neither held nor removed."""
    return col(NewsItem.control).not_in((HELD, REMOVED))


def included_filter() -> Any:
    """The SQL condition for items staff put into the next issue whatever their date."""
    return col(NewsItem.control) == INCLUDED


def staff_name(by: str | None) -> str:
    """Who acts: `--by NAME`, else the user name of the account running digest."""
    if by is not None and by.strip():
        return by.strip()[:100]
    try:
        return getpass.getuser()[:100]
    except (OSError, KeyError):
        return "unknown"


def find_item(session: Session, ref: str) -> NewsItem:
    """An item by its id (as `digest news list` shows it) or its link."""
    wanted = ref.strip()
    item: NewsItem | None = None
    if wanted.isdigit():
        item = session.get(NewsItem, int(wanted))
    elif wanted:
        try:
            url = check_url(wanted)
        except ValueError:
            raise UsageError(
                f"{wanted!r} is neither an item's id nor a link",
                hint="Give the id `digest news list` shows, or the item's http(s) link.",
            ) from None
        item = session.exec(select(NewsItem).where(NewsItem.key == item_key(url))).first()
        if item is None:  # not keyed on it: an item whose feed entry had no link of its own
            sharing = session.exec(
                select(NewsItem).where(NewsItem.url == url).order_by(col(NewsItem.id))
            ).all()
            if len(sharing) > 1:
                raise UsageError(
                    f"{len(sharing)} items link to {url} (items "
                    f"{', '.join(str(i.id) for i in sharing)})",
                    hint="Give the item's id instead.",
                )
            item = sharing[0] if sharing else None
    if item is None:
        raise NotFoundError(
            f"no news item {'with id' if wanted.isdigit() else 'at'} {wanted}",
            hint="`digest news list` shows the items with their ids.",
        )
    return item


def sent_in(session: Session, item_id: int | None) -> int | None:
    """The number of the issue that carried the item, if one did."""
    if item_id is None:
        return None
    number = session.exec(
        select(Issue.number)
        .join(IssueItem, col(IssueItem.issue_id) == col(Issue.id))
        .where(IssueItem.news_item_id == item_id)
        .order_by(col(Issue.number))
    ).first()
    return int(number) if number is not None else None


@dataclass(frozen=True)
class Controlled:
    item: NewsItem
    verb: str  # "Removed", "Held back" …
    already: bool  # it was so already: nothing changed
    sent_in: int | None  # an issue that already carried it (it stays as it was sent)
    undo: str | None  # the command that undoes it


@dataclass(frozen=True)
class Decision:
    """What staff decide about an item, and for the record who decided (default: the user
    name on this machine) and why."""

    action: Action
    by: str | None = None
    reason: str = ""


def control_item(
    session: Session, ref: str, decision: Decision, *, now: datetime | None = None
) -> Controlled:
    """Apply one staff decision to an item and record who made it, when and why."""
    action = decision.action
    item = find_item(session, ref)
    target, sources, verb = _ACTIONS[action]
    carried = sent_in(session, item.id)
    if action == "include" and carried is not None:
        raise UsageError(
            f"item {item.id} went out in issue #{carried} already; an item goes out once",
            hint="To send it again, add it as a new item with its own link.",
        )
    undoing = {"restore": (REMOVED,), "release": (HELD, INCLUDED)}.get(action)
    if item.control == target or (undoing is not None and item.control not in undoing):
        return Controlled(item, verb, True, carried, _UNDO.get(target))
    if item.control not in sources:
        raise UsageError(
            f"item {item.id} is {item.control}: it cannot be {_PARTICIPLE[action]} from there",
            hint=f"`digest news {_UNDO[item.control]} {item.id}` first."
            if item.control in _UNDO
            else None,
        )
    item.control = target
    item.control_by = staff_name(decision.by)
    item.control_at = now or utcnow()
    item.control_reason = " ".join(decision.reason.split())[:500]
    session.add(item)
    session.flush()
    return Controlled(item, verb, False, carried, _UNDO.get(target))


@dataclass(frozen=True)
class ItemChanges:
    """What staff change in a stored item (`digest news edit`); None leaves a field as it is."""

    title: str | None = None
    url: str | None = None
    summary: str | None = None
    category: str | None = None
    published: datetime | None = None

    @property
    def given(self) -> set[str]:
        """The fields it changes, by name (as save_item's `given` takes them)."""
        return {f.name for f in fields(self) if getattr(self, f.name) is not None}


def edit_item(session: Session, ref: str, changes: ItemChanges) -> Saved:
    """Change only the given fields of an item; they are marked as edited by staff, so a
    later fetch of its feed does not undo them. A new link must not be another item's."""
    item = find_item(session, ref)
    if not changes.given:
        raise UsageError(
            "nothing to change",
            hint="Give one or more of --title, --url, --summary, --category, --published.",
        )
    url = changes.url
    raw = ItemInput(
        title=item.title if changes.title is None else changes.title,
        url=item.url if url is None else url,
        summary=item.summary_html if changes.summary is None else changes.summary,
        category=item.category if changes.category is None else changes.category,
        published=changes.published,
        source=item.source,
        key=item.key,
    )
    linked = bool(item.url) and item.key == item_key(item.url)  # keyed on its link
    if url is not None:
        _check_link_free(session, item, url)
    try:
        saved = save_item(session, raw, given=changes.given, by_staff=True)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if linked and url is not None and saved.item.url:
        saved.item.key = item_key(saved.item.url)  # adding the new link again is this item
        session.add(saved.item)
        session.flush()
    return saved


def _check_link_free(session: Session, item: NewsItem, url: str) -> None:
    try:
        key = item_key(check_url(url))
    except ValueError as exc:
        raise UsageError(f"--url: {exc}") from None
    other = session.exec(
        select(NewsItem).where(sa.or_(col(NewsItem.key) == key, col(NewsItem.url) == url))
    ).first()
    if other is not None and other.id != item.id:
        raise UsageError(
            f"--url: item {other.id} ({other.title!r}) already has that link",
            hint=f"Remove one of them: `digest news remove {other.id}`.",
        )
