"""What `digest send` would do: resume an unfinished issue or draft the next; --scheduled and
--worker planning. Nothing here sends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlmodel import Session, col, select

from digest.config import Settings
from digest.errors import DigestError, UsageError
from digest.issues.freeze import IssueRace, create_issue
from digest.issues.manage import cancel_issue
from digest.issues.review import (
    Parts,
    frozen_parts,
    make_review_draft,
    pending_issues,
    review_step,
    start_approved,
)
from digest.issues.select import Draft, NextIssue, draft_issue, for_readers_of
from digest.issues.state import delivery_counts, unfinished_issue
from digest.issues.variants import audience_count
from digest.models import Issue, IssueStatus
from digest.text import plural


class StaleIssue(DigestError):
    """An unfinished issue too old to send without --force."""


@dataclass(frozen=True)
class SendPlan:
    """Either an unfinished issue to resume, or a draft to freeze into a new one."""

    resume: Issue | None
    draft: Draft | None
    recipients: int  # deliveries still to make
    parts: Parts | None = None  # an approved draft's: its recipients are queued when it starts


def approved_plan(session: Session, settings: Settings, issue: Issue) -> SendPlan:
    """A pending issue: an approved one is started with its parts; a draft is refused later."""
    parts = frozen_parts(session, settings, issue) if issue.status == IssueStatus.approved else None
    count = audience_count(session, parts.audience if parts else None)
    return SendPlan(resume=issue, draft=None, recipients=count, parts=parts)


def plan_send(
    session: Session, settings: Settings, shape: NextIssue | None = None
) -> SendPlan | None:
    """None when there is nothing to do: no unfinished issue and no new items."""
    unfinished = unfinished_issue(session)
    if unfinished is not None:
        if shape and shape.shaped:  # its content was frozen: nothing can be added now
            raise UsageError(
                f"issue {unfinished.number} is already being sent; --note and --featured "
                "only shape a new issue",
                hint="Run `digest send` without them to finish it first.",
            )
        return resume_plan(session, unfinished)
    pending = pending_issues(session)
    if pending:  # a draft (`digest send` refuses it) or an approved issue: sent before any new
        if shape and shape.shaped:
            raise UsageError(
                f"issue {pending[0].number} is already made (a draft for review); --note and "
                "--featured only shape a new issue"
            )
        return approved_plan(session, settings, pending[0])
    draft = draft_issue(session, settings, shape)
    if draft is None:
        return None
    return SendPlan(resume=None, draft=draft, recipients=audience_count(session, draft.audience))


def start_issue(session: Session, plan: SendPlan, *, period_key: str | None = None) -> Issue:
    """The issue to send: the unfinished one, or the draft frozen now with its recipients."""
    if plan.resume is not None:
        if plan.resume.status == IssueStatus.approved:
            assert plan.parts is not None
            return start_approved(session, plan.resume, plan.parts)  # recipients frozen now
        return plan.resume
    assert plan.draft is not None
    return create_issue(session, plan.draft, period_key=period_key)


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def period_key(settings: Settings, now: datetime, frequency: str | None = None) -> str:
    """The period of `frequency` (default: the first offered) containing `now` in the
    newsletter's time zone: 2026-W48 (weekly) or 2026-11-28 (daily)."""
    local = now.astimezone(settings.tz)
    if (frequency or settings.offered_frequencies[0]) == "daily":
        return local.strftime("%Y-%m-%d")
    year, week, _ = local.isocalendar()
    return f"{year}-W{week:02d}"


def period_start(settings: Settings, now: datetime, frequency: str | None = None) -> datetime:
    """When the period containing `now` began (local midnight; Monday for a weekly one)."""
    local = now.astimezone(settings.tz)
    daily = (frequency or settings.offered_frequencies[0]) == "daily"
    day = local.date() - timedelta(days=0 if daily else local.weekday())
    return datetime.combine(day, time(0), tzinfo=settings.tz)


def _before_weekly_day(settings: Settings, now: datetime, frequency: str) -> bool:
    """A weekly issue is made on `weekly_day` or later in its week."""
    wanted = WEEKDAYS.index(settings.weekly_day)
    return frequency == "weekly" and now.astimezone(settings.tz).weekday() < wanted


@dataclass(frozen=True)
class ScheduledPlan:
    key: str
    plan: SendPlan | None
    message: str  # what the scheduled run decided, in a sentence or two
    review: Issue | None = None  # review = "required": a draft whose review copy is due
    error: DigestError | None = None  # raised once the planning transaction is committed


def plan_scheduled(
    session: Session,
    settings: Settings,
    *,
    now: datetime,
    force: bool = False,
    frequency: str | None = None,
) -> ScheduledPlan:
    """One issue per period, for the subscribers of `frequency` (default: the first offered).

    - This period's issue is complete: nothing to do (an issue sent by hand this period counts).
    - It is unfinished: resume it, unless it is older than max_issue_age_hours — a stale issue
      is never sent late without --force.
    - An unfinished issue of an earlier period: resumed while still fresh; once stale, the rest
      of it is dropped (never sent late) so that it cannot hold up this period's issue.
    - Otherwise a new issue with the items since the last one; none: nothing to send.
    """
    frequency = frequency or settings.offered_frequencies[0]
    key = period_key(settings, now, frequency)
    max_age = timedelta(hours=settings.max_issue_age_hours)
    current = session.exec(select(Issue).where(Issue.period_key == key)).first()
    if current is None:
        started = period_start(settings, now, frequency)
        by_hand = session.exec(
            select(Issue)
            .where(col(Issue.period_key).is_(None), Issue.created_at >= started)
            .where(for_readers_of(frequency))
            .order_by(col(Issue.number).desc())
        ).first()
        current = by_hand
    notes: list[str] = []

    def resume(issue: Issue, prefix: str = "") -> ScheduledPlan:
        plan = resume_plan(session, issue)
        return ScheduledPlan(
            key, plan, prefix + f"Resuming issue {issue.number} ({plan.recipients} to go)."
        )

    # Issues whose only remaining deliveries are deferred do not hold up a new one.
    sending = session.exec(
        select(Issue)
        .where(Issue.status == IssueStatus.sending, for_readers_of(frequency))
        .order_by(col(Issue.number))
    ).all()
    waiting = {i.id for i in sending if not _has_untried(session, i.id)}
    for older in sending:
        if current is not None and older.id == current.id:
            continue
        fresh = force or now - older.created_at <= max_age
        if fresh and older.id not in waiting:
            return resume(older)
        if fresh:
            continue  # only deferred deliveries left: retried after this period's issue
        dropped = cancel_issue(session, older.number, reason="stale: not sent late").skipped
        hours = (now - older.created_at).total_seconds() / 3600
        notes.append(
            f"Issue {older.number} was still unfinished {hours:.0f} hours after it was made; "
            f"its {dropped} remaining deliveries were dropped, not sent late."
        )
    prefix = " ".join(notes) + (" " if notes else "")
    step = review_step(session, settings, key=key, now=now, force=force, frequency=frequency)
    if step is not None:
        start = step.start and approved_plan(session, settings, step.start)
        return ScheduledPlan(key, start or None, prefix + step.message, review=step.review,
                             error=step.error)  # fmt: skip
    if current is not None and current.status == IssueStatus.sending:
        age = now - current.created_at
        if age > max_age and not force:
            raise StaleIssue(
                f"issue {current.number} is unfinished and was made {age.total_seconds() / 3600:.0f} "
                f"hours ago, more than max_issue_age_hours ({settings.max_issue_age_hours:g}); "
                "not sending it late",
                hint=f"`digest send --scheduled --force` finishes it anyway; `digest issues cancel "
                f"{current.number}` drops the rest of it.",
            )
        if current.id in waiting:
            return ScheduledPlan(
                key, None, prefix + f"Issue {current.number} for {key} was sent; only its "
                "deferred deliveries are left, retried within retry_lifetime_hours.",
            )  # fmt: skip
        return resume(current, prefix)
    if current is not None:
        return ScheduledPlan(
            key,
            None,
            prefix
            + f"Issue {current.number} for {key} is already {current.status}; nothing to do.",
        )
    if _before_weekly_day(settings, now, frequency):
        return ScheduledPlan(key, None, prefix + f"The weekly issue for {key} is made on "
                             f"{settings.weekly_day.title()} or later; nothing to send yet.")  # fmt: skip
    draft = draft_issue(session, settings, now=now, frequency=frequency)
    if draft is None:
        return ScheduledPlan(key, None, prefix + f"No new items for {key}; nothing to send.")
    if settings.review == "required":
        try:
            with session.begin_nested():  # a race rolls back only the draft
                issue = make_review_draft(session, draft, period_key=key, now=now)
        except IssueRace:
            return ScheduledPlan(key, None, prefix + f"Another run made the draft for {key} "
                                 "a moment ago; it sends the review copy.")  # fmt: skip
        return ScheduledPlan(key, None, prefix + f"Issue {draft.number} for {key}: "
                             f"{plural(len(draft.items), 'item')}, drafted for review.",
                             review=issue)  # fmt: skip
    plan = SendPlan(resume=None, draft=draft, recipients=audience_count(session, draft.audience))
    return ScheduledPlan(
        key, plan, prefix + f"Issue {draft.number} for {key}: {plural(len(draft.items), 'item')}."
    )


def _has_untried(session: Session, issue_id: int | None) -> bool:
    """Deliveries of the issue still queued or in flight (not only deferred ones)."""
    return any(delivery_counts(session, issue_id or 0)[s] for s in ("queued", "sending"))


def join_plan(session: Session) -> SendPlan | None:
    """For `digest send --worker`: help with the unfinished issue, never start one."""
    unfinished = unfinished_issue(session)
    if unfinished is None:
        return None
    return resume_plan(session, unfinished)


def resume_plan(session: Session, issue: Issue) -> SendPlan:
    """Finish `issue`: its deliveries not yet made (queued, in flight or deferred)."""
    counts = delivery_counts(session, issue.id or 0)
    remaining = counts["queued"] + counts["sending"] + counts["deferred"]
    return SendPlan(resume=issue, draft=None, recipients=remaining)
