"""What is done about what comes back: GNU Mailman's bounce score, complaints and emailed
unsubscribes, each message exactly once.

- A bounce event adds `bounce_hard_score` (permanent) or `bounce_soft_score` (temporary) to the
  subscriber's score; at most one event a day counts (the heavier one, when a permanent bounce
  follows a temporary one on the same day). After `bounce_reset_days` without a counted event
  the score starts again from zero. At `bounce_threshold` an active subscriber becomes
  `bounced`, with the reason in the consent log (source `bounce`).
- A 5xx recorded on a delivery during the SMTP conversation counts as a permanent event too.
- A complaint (source `complaint`) or an emailed unsubscribe (source `email`) unsubscribes at
  once.
- Each message is recorded by its fingerprint (UNIQUE) in the same transaction as what it
  changed: reading a mailbox twice changes nothing, and a failure changes nothing at all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from digest.addresses import address_key
from digest.config import Settings
from digest.db import count_by, session_scope
from digest.errors import UsageError
from digest.inbound.classify import Classified, classify
from digest.models import (
    BounceEvent,
    BounceKind,
    Delivery,
    DeliveryStatus,
    InboundKind,
    InboundMessage,
    Issue,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from digest.subscribers import get_subscriber, set_status


@dataclass(frozen=True)
class Outcome:
    """What one message was and what was done about it."""

    kind: InboundKind
    already_seen: bool = False
    permanent: bool = False
    email: str = ""  # the subscriber it was about ('' when none)
    detail: str = ""
    changed: bool = False  # the subscriber's status changed because of it


@dataclass
class InboxSummary:
    outcomes: list[Outcome] = field(default_factory=list)
    smtp_failures: int = 0  # 5xx recorded during sending, counted as permanent bounces now

    def count(self, kind: InboundKind, permanent: bool | None = None) -> int:
        return sum(
            1
            for o in self.outcomes
            if not o.already_seen
            and o.kind == kind
            and (permanent is None or o.permanent == permanent)
        )

    @property
    def already_seen(self) -> int:
        return sum(1 for o in self.outcomes if o.already_seen)

    def line(self) -> str:
        bounces = self.count(InboundKind.bounce)
        return (
            f"{len(self.outcomes)} read: {bounces} bounces "
            f"({self.count(InboundKind.bounce, True)} permanent, "
            f"{self.count(InboundKind.bounce, False)} temporary), "
            f"{self.count(InboundKind.complaint)} complaints, "
            f"{self.count(InboundKind.unsubscribe)} unsubscribes, "
            f"{self.count(InboundKind.auto_reply)} auto-replies ignored, "
            f"{self.count(InboundKind.person)} for a person, {self.already_seen} already seen"
        )


# Processing one message -----------------------------------------------------------------


def process_message(
    engine: Engine,
    settings: Settings,
    raw: bytes,
    *,
    source: str = "",
    recipient: str | None = None,
    now: datetime | None = None,
) -> Outcome:
    """Classify `raw` and act on it, in one transaction with its fingerprint row."""
    now = now or utcnow()
    found = classify(raw, key=settings.keyring(), recipient=recipient)
    try:
        with session_scope(engine) as session:
            seen = _seen(session, found.fingerprint)
            if seen is not None:
                return seen
            row = InboundMessage(
                fingerprint=found.fingerprint, message_id=found.message_id, received_at=now,
                source=source[:500], kind=found.kind, detail=found.reason[:500],
            )  # fmt: skip
            session.add(row)
            session.flush()  # the UNIQUE fingerprint: a concurrent reader of the same message
            outcome = _act(session, settings, found, row, now)
            if outcome.kind != found.kind or outcome.detail != found.reason:
                row.kind, row.detail = outcome.kind, outcome.detail[:500]
                session.add(row)
            return outcome
    except sa.exc.IntegrityError:
        # Another process recorded the same message first; everything here was rolled back.
        with session_scope(engine) as session:
            seen = _seen(session, found.fingerprint)
        if seen is None:
            raise
        return seen


def _seen(session: Session, fingerprint: str) -> Outcome | None:
    row = session.exec(
        select(InboundMessage).where(InboundMessage.fingerprint == fingerprint)
    ).first()
    if row is None:
        return None
    return Outcome(InboundKind(row.kind), already_seen=True, detail=row.detail)


def _act(
    session: Session, settings: Settings, found: Classified, row: InboundMessage, now: datetime
) -> Outcome:
    if found.kind in (InboundKind.auto_reply, InboundKind.person):
        return Outcome(found.kind, detail=found.reason)
    targets = _targets(session, settings, found)
    if not targets:
        if found.kind == InboundKind.unsubscribe:  # a valid token for someone erased since
            return Outcome(found.kind, detail=f"{found.reason}: no longer on the list")
        why = (
            "its token is not valid (forged or mangled)"
            if found.bad_token
            else "it names no delivery of ours"
        )
        return Outcome(InboundKind.person, detail=f"{found.reason}; left alone: {why}"[:500])
    assert row.id is not None
    outcome = Outcome(found.kind, detail=found.reason)
    for sub, delivery in targets:
        source = EventSource(
            f"msg:{row.id}:{sub.id}", now, issue_id=delivery.issue_id if delivery else None,
            delivery_id=delivery.id if delivery else None, inbound_message_id=row.id,
        )  # fmt: skip
        if found.kind == InboundKind.bounce:
            failure = next(
                (f for f in found.failures if address_key(f.address) == sub.email_key), None
            )
            if failure is not None and not found.refs and not found.original_ids:
                permanent, status, diag = failure.permanent, failure.status, failure.diagnostic
            else:  # a token or our Message-ID named the delivery: the report's overall verdict
                permanent, status, diag = found.permanent, found.status, found.diagnostic
            changed = record_bounce(
                session, settings, sub, source, permanent=permanent, status=status, diagnostic=diag
            )
            outcome = Outcome(
                found.kind, permanent=permanent, email=sub.email, changed=changed,
                detail=found.reason,
            )  # fmt: skip
        else:
            complaint = found.kind == InboundKind.complaint
            kind = BounceKind.complaint if complaint else BounceKind.unsubscribe
            session.add(
                source.event(
                    sub, kind=kind, status=found.feedback_type[:32],
                    diagnostic=found.reason[:500], score_after=sub.bounce_score,
                )
            )  # fmt: skip
            changed = False
            if sub.status != SubscriberStatus.unsubscribed:  # bounced too: never re-activated
                changed = set_status(
                    session, sub, SubscriberStatus.unsubscribed,
                    source="complaint" if complaint else "email", detail=found.reason[:500],
                )  # fmt: skip
            outcome = Outcome(found.kind, email=sub.email, changed=changed, detail=found.reason)
    return outcome


def _targets(
    session: Session, settings: Settings, found: Classified
) -> list[tuple[Subscriber, Delivery | None]]:
    """Who a report is about: a valid token first, then our Message-ID of the original, and
    only without bounce_address (no VERP, no tokens to expect) the addresses it names."""

    def delivery(issue: Issue | None, sub: Subscriber) -> Delivery | None:
        if issue is None:
            return None
        return session.exec(
            select(Delivery).where(Delivery.issue_id == issue.id, Delivery.subscriber_id == sub.id)
        ).first()

    for ref in found.refs:
        sub = _subscriber(session, ref.subscriber_uid)
        if sub is not None:
            issue = _issue(session, number=ref.issue_number)
            return [(sub, delivery(issue, sub))]
    if found.kind == InboundKind.unsubscribe:
        return []
    for uid in found.subscriber_uids:
        sub = _subscriber(session, uid)
        if sub is not None:
            return [(sub, None)]
    for issue_uid, sub_uid in found.original_ids:
        issue = _issue(session, uid=issue_uid)
        sub = _subscriber(session, sub_uid)
        if issue is not None and sub is not None and (d := delivery(issue, sub)) is not None:
            return [(sub, d)]
    if settings.bounce_address or found.refs or found.bad_token:
        return []
    keys = list(dict.fromkeys(address_key(a) for a in found.addresses))
    if not keys:
        return []
    subs = session.exec(
        select(Subscriber).where(col(Subscriber.email_key).in_(keys)).order_by(col(Subscriber.id))
    ).all()
    return [(s, None) for s in subs]


def _subscriber(session: Session, uid: str) -> Subscriber | None:
    return session.exec(select(Subscriber).where(Subscriber.uid == uid)).first()


def _issue(session: Session, *, number: int | None = None, uid: str | None = None) -> Issue | None:
    where = Issue.number == number if number is not None else Issue.uid == uid
    return session.exec(select(Issue).where(where)).first()


# The score --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventSource:
    """Where a bounce event comes from: its origin (unique per event: `msg:MESSAGE:SUBSCRIBER`,
    `smtp:DELIVERY`), when, and the issue, delivery and inbound message it names."""

    origin: str
    at: datetime
    issue_id: int | None = None
    delivery_id: int | None = None
    inbound_message_id: int | None = None

    def event(self, sub: Subscriber, **what: Any) -> BounceEvent:
        """The event row for `sub`; `what`: its kind, status, diagnostic, score …"""
        return BounceEvent(
            at=self.at, origin=self.origin[:100], subscriber_id=sub.id, email=sub.email,
            issue_id=self.issue_id, delivery_id=self.delivery_id,
            inbound_message_id=self.inbound_message_id, **what,
        )  # fmt: skip


def record_bounce(
    session: Session,
    settings: Settings,
    sub: Subscriber,
    source: EventSource,
    *,
    permanent: bool,
    status: str,
    diagnostic: str,
) -> bool:
    """Add one bounce event to `sub`'s score; True when it made them `bounced`."""
    at = source.at
    weight = settings.bounce_hard_score if permanent else settings.bounce_soft_score
    score, last = sub.bounce_score, sub.bounce_counted_at
    if last is not None and at - last >= timedelta(days=settings.bounce_reset_days):
        score = 0.0  # a quiet month: the old bounces no longer count (Mailman's bounce_info)
    counted = True
    if (
        last is not None
        and at.astimezone(settings.tz).date() == last.astimezone(settings.tz).date()
    ):
        # One event a day counts: the heavier of the day's, never both.
        before = session.exec(
            select(func.max(BounceEvent.id)).where(
                BounceEvent.subscriber_id == sub.id, col(BounceEvent.counted).is_(True)
            )
        ).one()
        last_event = session.get(BounceEvent, before) if before else None
        last_kind = last_event.kind if last_event else BounceKind.temporary
        last_weight = (
            settings.bounce_hard_score
            if last_kind == BounceKind.permanent
            else settings.bounce_soft_score
        )
        counted = weight > last_weight
        if counted:
            score += weight - last_weight
    elif counted:
        score += weight
    if counted:
        sub.bounce_counted_at = max(at, last) if last else at
    sub.bounce_score = round(score, 6)
    session.add(sub)
    session.add(
        source.event(
            sub, kind=BounceKind.permanent if permanent else BounceKind.temporary,
            status=status[:32], diagnostic=diagnostic[:500], counted=counted,
            score_after=sub.bounce_score,
        )
    )  # fmt: skip
    session.flush()
    if (
        sub.bounce_score + 1e-9 >= settings.bounce_threshold
        and sub.status == SubscriberStatus.active
    ):
        reason = f"bounce score {sub.bounce_score:g} reached {settings.bounce_threshold:g}"
        what = " ".join(x for x in (status, diagnostic) if x)
        return set_status(
            session, sub, SubscriberStatus.bounced, source="bounce",
            detail=(f"{reason}: {what}" if what else reason)[:500],
        )  # fmt: skip
    return False


_REPLY_STATUS = re.compile(r"\b([45]\.\d{1,3}\.\d{1,3})\b")


def record_smtp_failures(engine: Engine, settings: Settings, *, now: datetime | None = None) -> int:
    """Count every 5xx recorded on a delivery during sending (within `bounce_reset_days`) as a
    permanent bounce event, once (its origin is the delivery). Returns how many were new."""
    now = now or utcnow()
    since = now - timedelta(days=settings.bounce_reset_days)
    with session_scope(engine) as session:
        done = select(BounceEvent.id).where(
            BounceEvent.origin
            == sa.literal("smtp:", sa.String) + sa.cast(col(Delivery.id), sa.String)
        )
        rows = session.exec(
            select(Delivery, Subscriber)
            .join(Subscriber, col(Subscriber.id) == col(Delivery.subscriber_id))
            .where(Delivery.status == DeliveryStatus.failed)
            .where(col(Delivery.last_reply).like("5%"))
            .where(col(Delivery.updated_at) >= since)
            .where(~done.exists())
            .order_by(col(Delivery.updated_at), col(Delivery.id))
        ).all()
        for d, sub in rows:
            m = _REPLY_STATUS.search(d.last_reply)
            source = EventSource(
                f"smtp:{d.id}", d.updated_at or now, issue_id=d.issue_id, delivery_id=d.id
            )
            record_bounce(
                session, settings, sub, source, permanent=True,
                status=m.group(1) if m else d.last_reply[:3], diagnostic=d.last_reply,
            )  # fmt: skip
        return len(rows)


# Reading back -----------------------------------------------------------------------------


def list_events(session: Session, *, since: datetime | None = None) -> Sequence[BounceEvent]:
    query = select(BounceEvent).order_by(col(BounceEvent.at), col(BounceEvent.id))
    if since is not None:
        query = query.where(BounceEvent.at >= since)
    return session.exec(query).all()


def issue_feedback_counts(session: Session, issue_id: int) -> dict[str, int]:
    """Events about one issue's deliveries, by kind (permanent, temporary, complaint, …)."""
    return count_by(session, BounceEvent.kind, BounceEvent.issue_id == issue_id)


def reactivate_subscriber(session: Session, email: str) -> Subscriber:
    """Staff bring a `bounced` subscriber back (the address works again): active, score zero.

    An unsubscribed person is never re-activated by staff: only they can subscribe again.
    """
    sub = get_subscriber(session, email)
    if sub.status == SubscriberStatus.unsubscribed:
        raise UsageError(
            f"{sub.email} unsubscribed ({sub.status_source}); staff cannot re-activate them",
            hint="They can subscribe again themselves on the web page.",
        )
    if sub.status != SubscriberStatus.bounced:
        raise UsageError(f"{sub.email} is {sub.status}, not bounced: nothing to re-activate")
    sub.bounce_score = 0.0
    sub.bounce_counted_at = None
    set_status(
        session, sub, SubscriberStatus.active, source="cli", detail="re-activated after bounces"
    )
    return sub
