"""Who gets which part of an issue: its variants (issue #15).

An issue holds all its frozen items. Each subscriber of its frequency gets the items of the
topics they chose (every item when they chose none), plus the items without a topic, less any
item an earlier issue already brought them (a switch of frequency mid-week). Subscribers who
get the same items share a *variant*: rendered and inlined once, when the issue is made, and
frozen with it, so the send path only substitutes per recipient. The variant is written on
the delivery row when it is queued: a change of topics during the send changes nothing. A
subscriber whose variant would hold no item is not mailed: their delivery is `skipped`, with
the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session, col, select

from digest.config import Settings
from digest.models import (
    Delivery,
    DeliveryStatus,
    Issue,
    IssueItem,
    IssueVariant,
    NewsItem,
    Subscriber,
    SubscriberStatus,
    SubscriberTopic,
)
from digest.news.categories import category_key
from digest.render.issue import RenderedIssue
from digest.text import plural
from digest.topics import item_categories, offered_keys

NOTHING_FOR_THEM = "none of their topics ({}) is in this issue"
ALL_RECEIVED = "every item of theirs in this issue reached them in an earlier issue"


@dataclass(frozen=True)
class Audience:
    """Who an issue is for: the subscribers of `frequency` (None: every active subscriber),
    a subscriber whose frequency is not offered counting as the `default` one; `topics`: the
    keys of the topics setting (None: every category is a topic)."""

    frequency: str | None
    default: str
    offered: tuple[str, ...]
    topics: frozenset[str] | None = None

    @classmethod
    def of(cls, settings: Settings, frequency: str | None = None) -> Audience:
        offered = settings.offered_frequencies
        return cls(frequency, offered[0], offered, offered_keys(settings))

    def where(self, subscriber: sa.Table) -> sa.ColumnElement[bool]:
        """The active subscribers this issue is for (a SQL condition)."""
        active = subscriber.c.status == SubscriberStatus.active.value
        if self.frequency is None:
            return active
        mine = subscriber.c.frequency == self.frequency
        if self.frequency == self.default:
            mine = sa.or_(mine, subscriber.c.frequency.not_in(self.offered))
        return sa.and_(active, mine)


Renderer = Callable[[Sequence[NewsItem]], RenderedIssue]


def audience_count(session: Session, audience: Audience | None) -> int:
    subscriber = Subscriber.__table__  # type: ignore[attr-defined]
    where = (audience or Audience(None, "weekly", ("weekly",))).where(subscriber)
    query = sa.select(sa.func.count()).select_from(subscriber).where(where)
    return int(session.execute(query).scalar_one())


def item_topic(item: NewsItem | IssueItem, topics: frozenset[str] | None) -> str | None:
    """The topic key an item belongs to; None: it goes to everyone (no category, or one that
    the topics setting does not offer)."""
    key = category_key(item.category) if item.category else ""
    if not key or (topics is not None and key not in topics):
        return None
    return key


def _choices(session: Session, audience: Audience) -> dict[int, frozenset[str]]:
    """The topics chosen by subscribers this issue is for (those with none are absent).

    Streamed in subscriber order, and equal sets shared: 20,000 subscribers in 20 distinct
    sets are 20 sets, not 130,000 rows held at once."""
    subscriber = Subscriber.__table__  # type: ignore[attr-defined]
    st = SubscriberTopic.__table__  # type: ignore[attr-defined]
    query = (
        sa.select(st.c.subscriber_id, st.c.topic_key)
        .join(subscriber, subscriber.c.id == st.c.subscriber_id)
        .where(audience.where(subscriber))
        .order_by(st.c.subscriber_id)
    )
    out: dict[int, frozenset[str]] = {}
    shared: dict[frozenset[str], frozenset[str]] = {}
    current: int | None = None
    keys: list[str] = []

    def done() -> None:
        if current is not None:
            chosen = frozenset(keys)
            out[current] = shared.setdefault(chosen, chosen)

    # per statement only: a server-side cursor for this read, not for what follows
    result = session.execute(query, execution_options={"yield_per": 2000})
    for sid, key in result:
        if sid != current:
            done()
            current, keys = sid, []
        keys.append(key)
    done()
    return out


def received_before(
    session: Session, issue_id: int, items: Sequence[NewsItem], audience: Audience
) -> dict[int, set[int]]:
    """subscriber id -> the news items of `items` an earlier issue brought (or is bringing)
    them: a subscriber who switched frequency never gets the same item twice."""
    ids = [i.id for i in items if i.id is not None]
    if not ids or audience.frequency is None:
        return {}  # an issue for everyone carries no item an earlier issue carried
    earlier = session.exec(
        select(IssueItem.issue_id, IssueItem.position, IssueItem.news_item_id).where(
            col(IssueItem.news_item_id).in_(ids), IssueItem.issue_id != issue_id
        )
    ).all()
    if not earlier:
        return {}
    carried: dict[int, dict[int, int]] = {}  # issue id -> position -> news item id
    for iid, position, nid in earlier:
        carried.setdefault(iid, {})[position] = nid or 0
    variants = {
        v.id: [int(p) for p in v.positions.split(",")]
        for v in session.exec(
            select(IssueVariant).where(col(IssueVariant.issue_id).in_(list(carried)))
        ).all()
    }
    rows = session.exec(
        select(Delivery.issue_id, Delivery.subscriber_id, Delivery.variant_id).where(
            col(Delivery.issue_id).in_(list(carried)),
            col(Delivery.status).not_in([DeliveryStatus.skipped, DeliveryStatus.failed]),
            col(Delivery.subscriber_id).is_not(None),
        )
    ).all()
    out: dict[int, set[int]] = {}
    for iid, sid, vid in rows:
        positions = carried[iid]
        got = positions.values() if vid is None else (positions.get(p) for p in variants[vid])
        out.setdefault(sid or 0, set()).update(n for n in got if n)
    return out


@dataclass(frozen=True)
class Part:
    positions: tuple[int, ...]  # the issue's items it holds (1-based)
    subscribers: list[int]


def plan_parts(
    items: Sequence[NewsItem],
    choices: dict[int, frozenset[str]],
    received: dict[int, set[int]],
    topics: frozenset[str] | None,
) -> list[Part]:
    """The subscribers who do not get the whole issue, grouped by the items they get (pure)."""
    keys = [item_topic(i, topics) for i in items]
    groups: dict[tuple[int, ...], list[int]] = {}
    full = tuple(range(1, len(items) + 1))
    nothing: frozenset[int] = frozenset()
    known: dict[tuple[frozenset[str] | None, frozenset[int]], tuple[int, ...]] = {}
    for sid in sorted(set(choices) | set(received)):
        chosen = choices.get(sid)
        got = frozenset(received[sid]) if sid in received else nothing
        positions = known.get((chosen, got))
        if positions is None:  # once per distinct choice, not once per subscriber
            positions = known[(chosen, got)] = tuple(
                n for n, (item, key) in enumerate(zip(items, keys, strict=True), 1)
                if (key is None or chosen is None or key in chosen) and item.id not in got
            )  # fmt: skip
        if positions != full:
            groups.setdefault(positions, []).append(sid)
    return [Part(p, s) for p, s in groups.items()]


def _topic_names(items: Sequence[NewsItem], topics: frozenset[str] | None) -> str:
    names: dict[str, str] = {}
    for item in items:
        key = item_topic(item, topics)
        if key is not None:
            names.setdefault(key, " ".join(item.category.split()))
    return ", ".join(names.values())


def queue_deliveries(
    session: Session,
    issue: Issue,
    items: Sequence[NewsItem],
    audience: Audience | None,
    render: Renderer | None,
) -> None:
    """One delivery for every subscriber the issue is for, each with its variant (rendered
    here, once each) or `skipped` with the reason; all in the caller's transaction."""
    assert issue.id is not None
    delivery = Delivery.__table__  # type: ignore[attr-defined]
    subscriber = Subscriber.__table__  # type: ignore[attr-defined]
    where = audience.where(subscriber) if audience is not None else (
        subscriber.c.status == SubscriberStatus.active.value
    )  # fmt: skip
    session.execute(
        sa.insert(delivery).from_select(
            ["issue_id", "subscriber_id", "status", "attempts", "last_reply"],
            sa.select(
                sa.literal(issue.id),
                subscriber.c.id,
                sa.literal(DeliveryStatus.queued.value),
                sa.literal(0),
                sa.literal(""),
            )
            .where(where)
            .order_by(subscriber.c.id),
        )
    )
    if audience is None:
        return  # a draft made without an audience (benchmarks): the whole issue for everyone
    choices = _choices(session, audience)
    received = received_before(session, issue.id, items, audience)
    if not choices and not received:
        return
    assert render is not None, "a draft with an audience renders its variants"
    names = {key: name for key, (name, _) in item_categories(session).items()}
    for part in plan_parts(items, choices, received, audience.topics):
        values: dict[str, object]
        if not part.positions:
            values = {"status": DeliveryStatus.skipped.value}
        else:
            chosen = [items[p - 1] for p in part.positions]
            start = time.perf_counter()
            rendered = render(chosen)
            variant = IssueVariant(
                issue_id=issue.id, positions=",".join(map(str, part.positions)),
                topics=_topic_names(chosen, audience.topics)[:1000],
                subject=rendered.subject, html=rendered.html, text=rendered.text,
                render_ms=round((time.perf_counter() - start) * 1000, 1),
            )  # fmt: skip
            session.add(variant)
            session.flush()
            values = {"variant_id": variant.id}
        _mark(session, issue.id, part, values, choices, names)


def _mark(
    session: Session,
    issue_id: int,
    part: Part,
    values: dict[str, object],
    choices: dict[int, frozenset[str]],
    names: dict[str, str],
) -> None:
    delivery = Delivery.__table__  # type: ignore[attr-defined]
    by_reason: dict[str, list[int]] = {}
    for sid in part.subscribers:
        reason = ""
        if values.get("status") == DeliveryStatus.skipped.value:
            chosen = choices.get(sid)
            shown = ", ".join(sorted(names.get(k, k) for k in chosen)) if chosen else ""
            reason = NOTHING_FOR_THEM.format(shown) if chosen else ALL_RECEIVED
        by_reason.setdefault(reason, []).append(sid)
    for reason, sids in by_reason.items():
        extra = {"last_reply": reason[:500]} if reason else {}
        for start in range(0, len(sids), 500):
            session.execute(
                sa.update(delivery)
                .where(
                    delivery.c.issue_id == issue_id,
                    delivery.c.subscriber_id.in_(sids[start : start + 500]),
                )
                .values(**values, **extra)
            )


def variant_rows(session: Session, issue_id: int) -> Sequence[IssueVariant]:
    """The variants of an issue (the send composes each once)."""
    return session.exec(
        select(IssueVariant).where(IssueVariant.issue_id == issue_id).order_by(col(IssueVariant.id))
    ).all()


def draft_parts(
    session: Session, items: Sequence[NewsItem], audience: Audience | None
) -> list[Part]:
    """For a draft not frozen (a preview, a dry run): who would not get the whole issue,
    grouped by the items they would get; nothing stored."""
    if audience is None:
        return []
    choices = _choices(session, audience)
    received = received_before(session, 0, items, audience)
    return plan_parts(items, choices, received, audience.topics)


def describe_parts(parts: Sequence[Part]) -> list[str]:
    """What `digest preview` says of a draft's variants."""
    if not parts:
        return []
    shown = [p for p in parts if p.positions]
    lines = [f"Variants for readers' topics: {len(shown)}"] if shown else []
    for p in sorted(shown, key=lambda p: p.positions):
        items = ", ".join(map(str, p.positions))
        lines.append(f"  items {items}: {plural(len(p.subscribers), 'subscriber')}")
    nothing = sum(len(p.subscribers) for p in parts if not p.positions)
    if nothing:
        lines.append(f"  none of their topics: {plural(nothing, 'subscriber')}, not mailed")
    return lines


def draft_variants(
    session: Session, items: Sequence[NewsItem], audience: Audience | None, render: Renderer | None
) -> dict[int, RenderedIssue | None]:
    """For a draft not frozen (a dry run): the variant each subscriber who does not get the
    whole issue would get, by subscriber id (None: they would be skipped); nothing stored."""
    if audience is None or render is None:
        return {}
    out: dict[int, RenderedIssue | None] = {}
    for part in draft_parts(session, items, audience):
        rendered = render([items[p - 1] for p in part.positions]) if part.positions else None
        out.update(dict.fromkeys(part.subscribers, rendered))
    return out
