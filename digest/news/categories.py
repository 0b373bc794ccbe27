"""Categories (the sections of the digest, and the topics subscribers choose): one key for
matching, whatever the case and spacing staff or a feed wrote, and one order for the sections.

"Training and events" and "Training and Events " are one category: they share a key. It is
shown as it was first written (the stored spelling of its earliest item)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlmodel import Session, col, func, select

from digest.models import NewsItem
from digest.news.normalise import clean_text

DEFAULT_SECTION = "News"  # the section of items with no category


def category_key(text: str) -> str:
    """The matching key of a category: trimmed, inner spaces collapsed, case-folded."""
    return " ".join(text.split()).casefold()


def canonical_category(session: Session, text: str, *, exclude_id: int | None = None) -> str:
    """A category as it is stored: cleaned, and spelt as the earliest stored item with the
    same key spells it (so a new spelling joins the section it matches)."""
    cleaned = clean_text(text, limit=100)
    if not cleaned:
        return ""
    key = category_key(cleaned)
    query = (
        select(NewsItem.category, func.min(NewsItem.created_at), func.min(NewsItem.id))
        .where(col(NewsItem.category) != "")
        .group_by(col(NewsItem.category))
    )
    if exclude_id is not None:
        query = query.where(col(NewsItem.id) != exclude_id)
    # The distinct categories are few: compare their keys here (SQL's lower() is ASCII-only).
    matches = sorted((at, n, stored) for stored, at, n in session.exec(query).all()
                     if category_key(stored) == key)  # fmt: skip
    if matches:
        return str(matches[0][2])
    return cleaned


def order_sections(names: Iterable[str], sections: Sequence[str] = ()) -> list[str]:
    """Section names in the digest's order: those listed in the setting `sections` first, in
    its order (matched by key), then the others alphabetically (by key)."""
    rank: dict[str, int] = {}
    for n, name in enumerate(sections):
        rank.setdefault(category_key(name), n)
    unique = list(dict.fromkeys(names))
    return sorted(
        unique,
        key=lambda name: (
            rank.get(category_key(name), len(rank)),
            category_key(name),
            name,
        ),
    )
