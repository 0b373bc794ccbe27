"""Staff actions on a frozen issue: retry its failed deliveries, cancel it."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session

from digest.errors import DigestError
from digest.issues.review import release
from digest.issues.state import delivery_counts, get_issue, status_words
from digest.models import (
    Delivery,
    DeliveryStatus,
    IssueStatus,
    utcnow,
)


def retry_issue(session: Session, number: int) -> int:
    """Queue an issue's deferred and failed deliveries again, on purpose; the next send resumes."""
    issue = get_issue(session, number)
    d = Delivery.__table__  # type: ignore[attr-defined]
    result = session.execute(
        sa.update(d)
        .where(
            d.c.issue_id == issue.id,
            d.c.status.in_([DeliveryStatus.deferred.value, DeliveryStatus.failed.value]),
        )
        .values(status=DeliveryStatus.queued.value, next_attempt_at=None, first_attempt_at=None)
    )
    n = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if n:
        issue.status = IssueStatus.sending
        issue.completed_at = None
        session.add(issue)
    return n


@dataclass(frozen=True)
class Cancelled:
    skipped: int  # deliveries that will not be made
    discarded: bool = False  # a draft (or approved issue) not started: nothing was sent


def cancel_issue(session: Session, number: int, *, reason: str = "issue cancelled") -> Cancelled:
    """Stop an unfinished issue: deliveries not yet made are skipped, never sent. A draft
    not sent yet is discarded, its items left for the next issue."""
    issue = get_issue(session, number)
    if issue.status in (IssueStatus.draft, IssueStatus.approved):
        release(session, issue, IssueStatus.discarded, now=utcnow())  # its items go back
        return Cancelled(0, discarded=True)
    if issue.status != IssueStatus.sending:
        words = status_words(issue, delivery_counts(session, issue.id or 0), active=False)
        raise DigestError(f"issue {number} is {words}, not being sent; nothing to cancel")
    d = Delivery.__table__  # type: ignore[attr-defined]
    result = session.execute(
        sa.update(d)
        .where(d.c.issue_id == issue.id,
               d.c.status.in_([DeliveryStatus.queued.value, DeliveryStatus.deferred.value, DeliveryStatus.sending.value]))
        .values(status=DeliveryStatus.skipped.value, last_reply=reason, lease_owner=None)
    )  # fmt: skip
    issue.status = IssueStatus.cancelled
    issue.completed_at = utcnow()
    session.add(issue)
    return Cancelled(int(result.rowcount or 0))  # type: ignore[attr-defined]
