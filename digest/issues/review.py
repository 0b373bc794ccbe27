"""Review before the weekly job sends (setting review = "required").

`digest send --scheduled` makes the period's issue a *draft*: its items are frozen, nobody is
sent anything but the review copy (send/review.py). `digest issues approve N` records who
approved it and when; the next scheduled run (or `digest send`) then starts it. Its
recipients are frozen when sending starts, as for any issue: whoever subscribes or leaves
between the draft and the send is treated as they would be at that moment.

Before approval, `digest issues refresh N` re-selects the draft's items (items added, removed
or held since then count); after approval new items wait for the next issue. A draft not
approved within max_issue_age_hours of being made is *stale*: never sent, and its items go
back to the pool for the next issue. A draft cancelled before it was sent is *discarded*,
likewise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from digest.config import Settings
from digest.errors import DigestError
from digest.issues.freeze import IssueRace, create_issue
from digest.issues.select import Draft, NextIssue, draft_issue, for_readers_of, part_renderer
from digest.issues.state import get_issue, issue_items
from digest.issues.variants import Audience, Renderer, queue_deliveries
from digest.models import Issue, IssueItem, IssueStatus, NewsItem, utcnow
from digest.text import plural
from digest.tokens import check_timed_token, make_timed_token

PENDING = (IssueStatus.draft, IssueStatus.approved)
# Issues nobody received that do not count as "the last issue" for the next one's period.
NEVER_SENT = (IssueStatus.stale, IssueStatus.discarded)
REVIEW = "review"  # the purpose of the tokens of review links
REVIEW_LINK_DAYS = 14  # how long the view-online link of a review or test copy works
NEXT = "next"  # a review link to the next issue as it would be made now (nothing stored yet)


class StaleDraft(DigestError):
    """A draft that was not approved in time: never sent late."""


def when(moment: datetime | None, settings: Settings) -> str:
    return moment.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M") if moment else "-"


def pending_issues(session: Session, frequency: str | None = None) -> Sequence[Issue]:
    """Drafts waiting for approval and approved issues not started yet, oldest first; with
    `frequency`, those for its readers (issues/select.for_readers_of)."""
    return session.exec(
        select(Issue)
        .where(col(Issue.status).in_(PENDING), for_readers_of(frequency))
        .order_by(col(Issue.number))
    ).all()


def make_review_draft(session: Session, draft: Draft, *, period_key: str, now: datetime) -> Issue:
    """The period's issue as a draft: items frozen, no deliveries."""
    issue = create_issue(session, draft, period_key=period_key, for_review=True)
    issue.created_at = now
    session.add(issue)
    session.flush()
    return issue


def _draft_only(issue: Issue, settings: Settings, action: str) -> None:
    if issue.status == IssueStatus.draft:
        return
    if issue.status == IssueStatus.approved:
        raise DigestError(
            f"issue {issue.number} was already approved by {issue.approved_by} at "
            f"{when(issue.approved_at, settings)}; nothing to {action}",
            hint="New items wait for the next issue. The next `digest send --scheduled` sends it.",
        )
    raise DigestError(
        f"issue {issue.number} is {issue.status}, not a draft; nothing to {action}",
        hint="`digest issues list` shows the drafts.",
    )


def approve_issue(
    session: Session, settings: Settings, number: int, *, by: str, now: datetime
) -> Issue:
    """Approve draft `number`: the next scheduled run (or `digest send`) sends it."""
    issue = get_issue(session, number)
    _draft_only(issue, settings, "approve")
    age = now - issue.created_at
    if age > timedelta(hours=settings.max_issue_age_hours):
        raise StaleDraft(
            f"issue {number} was drafted {age.total_seconds() / 3600:.0f} hours ago, more than "
            f"max_issue_age_hours ({settings.max_issue_age_hours:g}); it will not be sent late",
            hint=f"`digest issues refresh {number}` brings its items up to date and makes it "
            "current again; then approve it.",
        )
    i = Issue.__table__  # type: ignore[attr-defined]
    done = session.execute(
        sa.update(i)
        .where(i.c.id == issue.id, i.c.status == IssueStatus.draft.value)
        .values(status=IssueStatus.approved.value, approved_by=by[:100], approved_at=now)
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        raise IssueRace(f"issue {number} changed meanwhile", hint="Run the command again.")
    session.refresh(issue)
    return issue


@dataclass(frozen=True)
class Refreshed:
    issue: Issue
    added: list[str]  # titles
    removed: list[str]


def refresh_draft(session: Session, settings: Settings, number: int, *, now: datetime) -> Refreshed:
    """Select draft `number`'s items again, from its period's start until now, as a new draft
    would be (items added, removed or held meanwhile count), and restart its age: it is as
    current as a draft made now. Its number, period and review link stay."""
    old = get_issue(session, number)
    _draft_only(old, settings, "refresh")
    before = {it.news_item_id: it.title for it in issue_items(session, old.id or 0)}
    uid, key, since, reviewed = old.uid, old.period_key, old.period_start, old.review_sent_at
    shape = NextIssue(since=since, until=now, note_markdown=old.note_markdown or None,
                      featured_url=old.featured_url)  # fmt: skip
    frequency = old.frequency
    # The draft goes, so the items and the number are chosen as if it had never been made.
    session.execute(sa.delete(IssueItem).where(col(IssueItem.issue_id) == old.id))
    session.delete(old)
    session.flush()
    draft = draft_issue(session, settings, shape, now=now, frequency=frequency)
    if draft is None:
        raise DigestError(
            f"issue {number} would have no items left; it was left as it was",
            hint=f"`digest issues cancel {number}` discards the draft.",
        )
    issue = create_issue(session, draft, period_key=key, for_review=True, uid=uid)
    issue.created_at, issue.review_sent_at = now, reviewed
    session.add(issue)
    session.flush()
    after = {item.id: item.title for item in draft.items}
    return Refreshed(
        issue,
        added=[t for k, t in after.items() if k not in before],
        removed=[t for k, t in before.items() if k not in after],
    )


def release(session: Session, issue: Issue, status: IssueStatus, *, now: datetime) -> None:
    """A draft that will never be sent (stale or discarded): its items go back to the pool
    (the frozen copies stay, for `issues show`)."""
    session.execute(
        sa.update(IssueItem).where(col(IssueItem.issue_id) == issue.id).values(news_item_id=None)
    )
    issue.status, issue.completed_at = status, now
    session.add(issue)
    session.flush()


@dataclass(frozen=True)
class Parts:
    """What queuing an approved draft's deliveries needs: its items as they were frozen, who
    it is for, and how a variant of it is rendered (as when it was drafted)."""

    items: Sequence[NewsItem]
    audience: Audience
    render: Renderer


def frozen_parts(session: Session, settings: Settings, issue: Issue) -> Parts:
    frozen = issue_items(session, issue.id or 0)
    ids = [it.news_item_id for it in frozen if it.news_item_id is not None]
    sources = dict(
        session.exec(select(NewsItem.id, NewsItem.source).where(col(NewsItem.id).in_(ids))).all()
    )
    items = [
        NewsItem(
            id=it.news_item_id,
            key="",
            title=it.title,
            url=it.url,
            summary_html=it.summary_html,
            summary_text=it.summary_text,
            category=it.category,
            published_at=it.published_at,
            source=sources.get(it.news_item_id, ""),
        )  # fmt: skip
        for it in frozen
    ]
    render = part_renderer(
        settings, items, since=issue.period_start, until=issue.period_end, number=issue.number,
        note_markdown=issue.note_markdown or None, featured_url=issue.featured_url,
    )  # fmt: skip
    return Parts(items, Audience.of(settings, issue.frequency), render)


def start_approved(session: Session, issue: Issue, parts: Parts) -> Issue:
    """Start sending an approved issue: its recipients are the subscribers it is for now,
    each with their variant. Only one run can start it (IssueRace for the others)."""
    i = Issue.__table__  # type: ignore[attr-defined]
    done = session.execute(
        sa.update(i)
        .where(i.c.id == issue.id, i.c.status == IssueStatus.approved.value)
        .values(status=IssueStatus.sending.value)
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        raise IssueRace(f"issue {issue.number} was started by another run at the same time")
    started = session.get(Issue, issue.id)
    assert started is not None
    session.refresh(started)
    queue_deliveries(session, started, parts.items, parts.audience, parts.render)
    session.flush()
    return started


def ensure_sendable(issue: Issue) -> None:
    """`digest send` may start an approved issue, never a draft."""
    if issue.status == IssueStatus.draft:
        raise DigestError(
            f"issue {issue.number} is a draft waiting for approval; nothing was sent",
            hint=f"`digest issues approve {issue.number}`, then `digest send`; or "
            f"`digest send --to ADDRESS` for a copy.",
        )


@dataclass(frozen=True)
class ReviewStep:
    """What a scheduled run does about a pending draft."""

    message: str
    start: Issue | None = None  # an approved issue to send now
    review: Issue | None = None  # a draft whose review copy is still to be sent
    error: DigestError | None = None  # raised once the run's transaction is committed


def review_step(
    session: Session,
    settings: Settings,
    *,
    key: str,
    now: datetime,
    force: bool,
    frequency: str | None = None,
) -> ReviewStep | None:
    """The scheduled run's step for the oldest pending draft; None when there is none.

    - not approved within max_issue_age_hours: stale, never sent (exit 1, said once);
    - approved: sent now (once too old: only with --force);
    - waiting for approval: its review copy is sent once, later runs only say so.
    """
    pending = pending_issues(session, frequency)
    if not pending:
        return None
    issue = pending[0]
    n, hours = issue.number, settings.max_issue_age_hours
    age = now - issue.created_at
    if age > timedelta(hours=hours) and (issue.status == IssueStatus.draft or not force):
        if issue.status == IssueStatus.approved and issue.period_key == key:
            return ReviewStep("", error=StaleDraft(
                f"issue {n} was approved but is {age.total_seconds() / 3600:.0f} hours old, more "
                f"than max_issue_age_hours ({hours:g}); not sending it late",
                hint=f"`digest send --scheduled --force` sends it anyway; `digest issues cancel "
                f"{n}` discards it (its items then go into the next issue).",
            ))  # fmt: skip
        was = "approved" if issue.status == IssueStatus.approved else "not approved"
        release(session, issue, IssueStatus.stale, now=now)
        return ReviewStep("", error=StaleDraft(
            f"issue {n} ({issue.period_key or 'a draft'}) was {was} and not sent within "
            f"max_issue_age_hours ({hours:g}) of being drafted; it is stale and will not be sent",
            hint="Its items wait for the next issue; `digest send` sends them now.",
        ))  # fmt: skip
    if issue.status == IssueStatus.approved:
        return ReviewStep(
            f"Issue {n} was approved by {issue.approved_by} at {when(issue.approved_at, settings)}"
            "; sending it.",
            start=issue,
        )
    if issue.review_sent_at is None and settings.review_to:
        return ReviewStep(f"Issue {n} is a draft; sending its review copy.", review=issue)
    sent = issue.review_sent_at
    said = f"review copy sent at {when(sent, settings)}" if sent else "no review_to: no review copy"
    return ReviewStep(
        f"Issue {n} is waiting for approval ({said}); nothing sent. `digest issues approve {n}` "
        "approves it."
    )


def pending_note(session: Session) -> str | None:
    """For `digest preview`: a draft waiting (or approved) goes out before the issue it shows."""
    pending = pending_issues(session)
    if not pending:
        return None
    n = pending[0].number
    return (
        f"Issue {n} ({pending[0].status}) goes out first; this preview is of the issue after "
        f"it. `digest send --to ADDRESS` sends you a copy of issue {n}."
    )


def draft_words(issue: Issue, settings: Settings) -> str:
    """A pending or never-sent draft's status for people."""
    if issue.status == IssueStatus.approved:
        return f"approved by {issue.approved_by} at {when(issue.approved_at, settings)}"
    if issue.status == IssueStatus.draft:
        sent = issue.review_sent_at
        return f"draft, review copy sent {when(sent, settings)}" if sent else "draft"
    if issue.status == IssueStatus.stale:
        return "stale, never sent"
    return "discarded, never sent"


def items_said(refreshed: Refreshed) -> str:
    return (
        f"{plural(len(refreshed.added), 'item')} added, {plural(len(refreshed.removed), 'item')} "
        "removed"
    )


def review_token(settings: Settings, payload: str, *, now: datetime | None = None) -> str:
    """The token of a review link: an issue's uid, or NEXT; signed, for REVIEW_LINK_DAYS."""
    return make_timed_token(settings.secret_key_bytes(), REVIEW, payload, now=now or utcnow())


def review_link(settings: Settings, payload: str, *, now: datetime | None = None) -> str | None:
    if not settings.base_url:
        return None
    return f"{settings.base_url}/review/{review_token(settings, payload, now=now)}"


def read_review_token(settings: Settings, token: str, *, now: datetime) -> str | None:
    """The payload of a valid review token (an issue uid, or NEXT), None otherwise."""
    check, _ = check_timed_token(
        settings.keyring(), REVIEW, token, max_age=timedelta(days=REVIEW_LINK_DAYS), now=now,
        retired_ok=True,
    )  # fmt: skip
    return check.uid


def issue_by_uid(session: Session, uid: str) -> Issue | None:
    return session.exec(select(Issue).where(Issue.uid == uid)).first()
