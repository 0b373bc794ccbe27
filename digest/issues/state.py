"""Where the issues stand: unfinished, retrying, archived, counts and details."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from digest.db import count_by
from digest.errors import NotFoundError
from digest.models import (
    TERMINAL_DELIVERY,
    Delivery,
    DeliveryStatus,
    Issue,
    IssueItem,
    IssueStatus,
    IssueVariant,
    Subscriber,
    utcnow,
)


def _with_rows(statuses: Sequence[str]) -> Any:
    return (
        select(Delivery.id)
        .where(Delivery.issue_id == Issue.id, col(Delivery.status).in_(statuses))
        .exists()
    )


def unfinished_issue(session: Session) -> Issue | None:
    """The issue a send resumes: one being sent with deliveries not yet tried (queued, or in
    flight). An issue whose only remaining deliveries are deferred does not hold up the next
    issue: its retries go on in later runs (`retrying_issues`)."""
    return session.exec(
        select(Issue)
        .where(Issue.status == IssueStatus.sending, _with_rows(["queued", "sending"]))
        .order_by(col(Issue.number))
    ).first()


def retrying_issues(session: Session, now: datetime) -> Sequence[Issue]:
    """Issues being sent whose only remaining deliveries are deferred, some of them due."""
    due = (
        select(Delivery.id)
        .where(
            Delivery.issue_id == Issue.id,
            Delivery.status == DeliveryStatus.deferred,
            sa.or_(col(Delivery.next_attempt_at).is_(None), col(Delivery.next_attempt_at) <= now),
        )
        .exists()
    )
    return session.exec(
        select(Issue)
        .where(Issue.status == IssueStatus.sending, ~_with_rows(["queued", "sending"]), due)
        .order_by(col(Issue.number))
    ).all()


MAX_ISSUE_NUMBER = 2**31 - 1  # the column is an INTEGER everywhere; beyond it, no issue


def get_issue(session: Session, number: int) -> Issue:
    issue = None
    if 1 <= number <= MAX_ISSUE_NUMBER:
        issue = session.exec(select(Issue).where(Issue.number == number)).first()
    if issue is None:
        raise NotFoundError(f"no issue {number}", hint="`digest issues list` shows the issues.")
    return issue


def _received_or_sending() -> Any:
    """Issues that belong in the archive: being sent, or received by someone (a cancelled or
    stale issue nobody received is not a past issue; one cancelled halfway is)."""
    return sa.or_(col(Issue.status) == IssueStatus.sending, _with_rows(["sent"]))


def archived_issues(session: Session) -> Sequence[Issue]:
    """The issues of the web archive, newest first."""
    return session.exec(
        select(Issue).where(_received_or_sending()).order_by(col(Issue.number).desc())
    ).all()


def archived_issue(session: Session, number: int) -> Issue:
    """Issue `number` if it is in the archive; NotFoundError otherwise."""
    issue = get_issue(session, number)
    if session.exec(select(Issue.id).where(Issue.id == issue.id, _received_or_sending())).first():
        return issue
    raise NotFoundError(f"no issue {number} in the archive")


def delivery_counts(session: Session, issue_id: int) -> dict[str, int]:
    counts = {s.value: 0 for s in DeliveryStatus}
    counts.update(count_by(session, Delivery.status, Delivery.issue_id == issue_id))
    return counts


def finish_if_done(session: Session, issue: Issue) -> bool:
    """Mark the issue sent (or sent_with_failures) when, and only when, every row is terminal."""
    counts = delivery_counts(session, issue.id or 0)
    if any(n for status, n in counts.items() if status not in TERMINAL_DELIVERY):
        return False
    if issue.status == IssueStatus.cancelled:
        return True
    issue.status = IssueStatus.sent_with_failures if counts["failed"] else IssueStatus.sent
    issue.completed_at = utcnow()
    session.add(issue)
    session.flush()
    return True


def being_sent(session: Session, issue_id: int, *, now: datetime) -> bool:
    """Whether some process holds a delivery of the issue with a lease that has not run out
    (a process that died holds nothing once its leases have run out)."""
    d = Delivery.__table__  # type: ignore[attr-defined]
    query = (
        sa.select(d.c.id)
        .where(d.c.issue_id == issue_id, d.c.status == DeliveryStatus.sending.value)
        .where(d.c.lease_expires_at > now)
        .limit(1)
    )
    return session.execute(query).first() is not None


def status_words(issue: Issue, counts: dict[str, int], *, active: bool) -> str:
    """An issue's status for people: "sent, 3 failed" rather than sent_with_failures, and an
    issue nobody is sending is "unfinished" (or "retrying later"), not "sending"."""
    if issue.status == IssueStatus.sent_with_failures:
        return f"sent, {counts.get('failed', 0)} failed"
    if issue.status == IssueStatus.cancelled:
        sent = counts.get("sent", 0)
        return f"cancelled after {sent} sent" if sent else "cancelled"
    if issue.status == IssueStatus.sending and not active:
        waiting = counts.get("queued", 0) + counts.get("sending", 0)
        return "unfinished" if waiting or not counts.get("deferred", 0) else "retrying later"
    return str(issue.status)


def list_issues(session: Session) -> list[tuple[Issue, dict[str, int], int]]:
    issues = session.exec(select(Issue).order_by(col(Issue.number).desc())).all()
    out = []
    for issue in issues:
        n_items = session.exec(
            select(func.count()).select_from(IssueItem).where(IssueItem.issue_id == issue.id)
        ).one()
        out.append((issue, delivery_counts(session, issue.id or 0), n_items))
    return out


def issue_items(session: Session, issue_id: int) -> Sequence[IssueItem]:
    return session.exec(
        select(IssueItem).where(IssueItem.issue_id == issue_id).order_by(col(IssueItem.position))
    ).all()


def problem_deliveries(session: Session, issue_id: int) -> list[tuple[str, str, int, str]]:
    """(address, status, attempts, last reply) of failed and deferred deliveries."""
    rows = session.exec(
        select(Subscriber.email, Delivery.status, Delivery.attempts, Delivery.last_reply)
        .join(Subscriber, col(Subscriber.id) == col(Delivery.subscriber_id), isouter=True)
        .where(Delivery.issue_id == issue_id)
        .where(col(Delivery.status).in_([DeliveryStatus.failed, DeliveryStatus.deferred]))
        .order_by(col(Delivery.id))
    ).all()
    return [
        (email or "(removed)", status, attempts, reply) for email, status, attempts, reply in rows
    ]


def variant_summary(session: Session, issue_id: int) -> list[tuple[str, str, int]]:
    """(topics, items by position, deliveries) of the issue's variants (issues/variants.py),
    the whole issue first; empty for an issue without variants."""
    v = IssueVariant.__table__  # type: ignore[attr-defined]
    d = Delivery.__table__  # type: ignore[attr-defined]
    found = session.execute(
        sa.select(v.c.id, v.c.topics, v.c.positions, sa.func.count(d.c.id))
        .select_from(v.outerjoin(d, d.c.variant_id == v.c.id))
        .where(v.c.issue_id == issue_id)
        .group_by(v.c.id, v.c.topics, v.c.positions)
        .order_by(v.c.id)
    ).all()
    if not found:
        return []
    whole = session.execute(
        sa.select(sa.func.count())
        .select_from(d)
        .where(d.c.issue_id == issue_id, d.c.variant_id.is_(None))
    ).scalar_one()
    rows = [("(the whole issue)", "all", int(whole))]
    return rows + [(t or "(none)", p.replace(",", ", "), int(n)) for _, t, p, n in found]


@dataclass(frozen=True)
class IssueDetail:
    issue: Issue
    counts: dict[str, int]
    items: Sequence[IssueItem]
    problems: list[tuple[str, str, int, str]]  # see problem_deliveries
    feedback: dict[str, int] = field(default_factory=dict)  # bounce events by kind (inbound/)
    variants: list[tuple[str, str, int]] = field(default_factory=list)  # see variant_summary


def issue_detail(session: Session, number: int) -> IssueDetail:
    """One issue (`digest issues show`): its delivery counts, its items, its variants, and its
    failed and deferred deliveries with the server's last reply."""
    issue = get_issue(session, number)
    issue_id = issue.id or 0
    from digest.inbound.act import issue_feedback_counts

    return IssueDetail(
        issue, delivery_counts(session, issue_id), issue_items(session, issue_id),
        problem_deliveries(session, issue_id), issue_feedback_counts(session, issue_id),
        variant_summary(session, issue_id),
    )  # fmt: skip
