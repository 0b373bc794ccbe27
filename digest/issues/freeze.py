"""Freeze a draft into an issue with its recipients, one issue at a time."""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from sqlmodel import Session, func, select

from digest.errors import DigestError
from digest.issues.select import Draft, ensure_fits
from digest.issues.variants import queue_deliveries
from digest.models import (
    Issue,
    IssueItem,
    IssueStatus,
    Subscriber,
    SubscriberStatus,
)


def active_count(session: Session) -> int:
    return session.exec(
        select(func.count())
        .select_from(Subscriber)
        .where(Subscriber.status == SubscriberStatus.active)
    ).one()


class IssueRace(DigestError):
    """Another process made the same issue (same number or period) at the same moment."""


def create_issue(
    session: Session,
    draft: Draft,
    *,
    period_key: str | None = None,
    for_review: bool = False,
    uid: str | None = None,
) -> Issue:
    """Freeze the draft: the issue, a copy of its items, and one queued delivery for every
    active subscriber it is for, each with its variant (issues/variants.py), all in the
    caller's transaction. Later subscribers are not in it.

    `for_review`: a draft issue waiting for approval (issues/review.py), its items frozen but
    no deliveries yet: its recipients are frozen when sending starts (`queue_deliveries`).
    An issue too large to reach readers whole (`ensure_fits`) is refused first: TooLarge."""
    ensure_fits(draft)
    issue = Issue(
        number=draft.number,
        uid=uid or secrets.token_hex(8),
        status=IssueStatus.draft if for_review else IssueStatus.sending,
        subject=draft.rendered.subject,
        period_start=draft.period_start,
        period_end=draft.period_end,
        html=draft.rendered.html,
        text=draft.rendered.text,
        period_key=period_key,
        message_id_domain=draft.message_id_domain or None,
        frequency=draft.audience.frequency if draft.audience else None,
        note_markdown=draft.note_markdown,
        featured_url=draft.featured_url,
    )
    session.add(issue)
    try:
        session.flush()
    except sa.exc.IntegrityError:
        raise IssueRace(
            f"issue {draft.number} was created by another digest process at the same time",
            hint="Run `digest send` again: it resumes that issue.",
        ) from None
    assert issue.id is not None
    for position, item in enumerate(draft.items, 1):
        session.add(
            IssueItem(
                issue_id=issue.id,
                news_item_id=item.id,
                position=position,
                title=item.title,
                url=item.url,
                summary_html=item.summary_html,
                summary_text=item.summary_text,
                category=item.category,
                published_at=item.published_at,
            )
        )
    if not for_review:  # a review draft's recipients are frozen when sending starts
        queue_deliveries(session, issue, draft.items, draft.audience, draft.render_part)
    session.flush()
    return issue
    session.flush()
