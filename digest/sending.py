"""What `digest send` does, step by step: plan, confirm, freeze, deliver. And its safe
variants: a test copy to a few addresses, and a dry run into a folder."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from email.utils import parseaddr
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from digest.addresses import normalise_address
from digest.config import Settings
from digest.db import session_scope
from digest.delivery import (
    DeliveryRun,
    SendOutcome,
    SendProgress,
    issue_template,
    message_id,
    message_settings,
    send_lock,
    unsubscribe_url,
)
from digest.errors import DigestError, UsageError
from digest.issues import (
    Draft,
    IssueRace,
    active_count,
    cancel_issue,
    create_issue,
    delivery_counts,
    draft_issue,
    unfinished_issue,
)
from digest.mailer import Sender, SendResult, SmtpSender
from digest.message import MessageTemplate, Recipient
from digest.models import Issue, IssueStatus, Subscriber, SubscriberStatus, utcnow

TEST_PREFIX = "[TEST] "


class StaleIssue(DigestError):
    """An unfinished issue too old to send without --force."""


@dataclass(frozen=True)
class SendPlan:
    """Either an unfinished issue to resume, or a draft to freeze into a new one."""

    resume: Issue | None
    draft: Draft | None
    recipients: int  # deliveries still to make


def plan_send(
    session: Session,
    settings: Settings,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    note_markdown: str | None = None,
    featured_url: str | None = None,
) -> SendPlan | None:
    """None when there is nothing to do: no unfinished issue and no new items."""
    unfinished = unfinished_issue(session)
    if unfinished is not None:
        if note_markdown or featured_url:  # its content was frozen: nothing can be added now
            raise UsageError(
                f"issue {unfinished.number} is already being sent; --note and --featured "
                "only shape a new issue",
                hint="Run `digest send` without them to finish it first.",
            )
        return resume_plan(session, unfinished)
    draft = draft_issue(
        session, settings, since=since, until=until, note_markdown=note_markdown,
        featured_url=featured_url,
    )  # fmt: skip
    if draft is None:
        return None
    return SendPlan(resume=None, draft=draft, recipients=active_count(session))


def start_issue(session: Session, plan: SendPlan, *, period_key: str | None = None) -> Issue:
    """The issue to send: the unfinished one, or the draft frozen now with its recipients."""
    if plan.resume is not None:
        return plan.resume
    assert plan.draft is not None
    return create_issue(session, plan.draft, period_key=period_key)


def period_key(settings: Settings, now: datetime) -> str:
    """The schedule period containing `now` in the newsletter's time zone: 2026-W48 or 2026-11-28."""
    local = now.astimezone(settings.tz)
    if settings.schedule == "daily":
        return local.strftime("%Y-%m-%d")
    year, week, _ = local.isocalendar()
    return f"{year}-W{week:02d}"


def period_start(settings: Settings, now: datetime) -> datetime:
    """When the period containing `now` began (local midnight; Monday for a weekly schedule)."""
    local = now.astimezone(settings.tz)
    day = local.date() - timedelta(days=0 if settings.schedule == "daily" else local.weekday())
    return datetime.combine(day, time(0), tzinfo=settings.tz)


@dataclass(frozen=True)
class ScheduledPlan:
    key: str
    plan: SendPlan | None
    message: str  # what the scheduled run decided, in a sentence or two


def plan_scheduled(
    session: Session, settings: Settings, *, now: datetime, force: bool = False
) -> ScheduledPlan:
    """One issue per period.

    - This period's issue is complete: nothing to do (an issue sent by hand this period counts).
    - It is unfinished: resume it, unless it is older than max_issue_age_hours — a stale issue
      is never sent late without --force.
    - An unfinished issue of an earlier period: resumed while still fresh; once stale, the rest
      of it is dropped (never sent late) so that it cannot hold up this period's issue.
    - Otherwise a new issue with the items since the last one; none: nothing to send.
    """
    key = period_key(settings, now)
    max_age = timedelta(hours=settings.max_issue_age_hours)
    current = session.exec(select(Issue).where(Issue.period_key == key)).first()
    if current is None:
        by_hand = session.exec(
            select(Issue)
            .where(col(Issue.period_key).is_(None), Issue.created_at >= period_start(settings, now))
            .order_by(col(Issue.number).desc())
        ).first()
        current = by_hand
    notes: list[str] = []

    def resume(issue: Issue, prefix: str = "") -> ScheduledPlan:
        plan = resume_plan(session, issue)
        return ScheduledPlan(
            key, plan, prefix + f"Resuming issue {issue.number} ({plan.recipients} to go)."
        )

    for older in session.exec(
        select(Issue).where(Issue.status == IssueStatus.sending).order_by(col(Issue.number))
    ).all():
        if current is not None and older.id == current.id:
            continue
        if force or now - older.created_at <= max_age:
            return resume(older)
        dropped = cancel_issue(session, older.number, reason="stale: not sent late")
        hours = (now - older.created_at).total_seconds() / 3600
        notes.append(
            f"Issue {older.number} was still unfinished {hours:.0f} hours after it was made; "
            f"its {dropped} remaining deliveries were dropped, not sent late."
        )
    prefix = " ".join(notes) + (" " if notes else "")
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
        return resume(current, prefix)
    if current is not None:
        return ScheduledPlan(
            key,
            None,
            prefix
            + f"Issue {current.number} for {key} is already {current.status}; nothing to do.",
        )
    draft = draft_issue(session, settings, now=now)
    if draft is None:
        return ScheduledPlan(key, None, prefix + f"No new items for {key}; nothing to send.")
    plan = SendPlan(resume=None, draft=draft, recipients=active_count(session))
    return ScheduledPlan(
        key, plan, prefix + f"Issue {draft.number} for {key}: {_n(len(draft.items), 'item')}."
    )


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


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


def draft_template(settings: Settings, draft: Draft, *, test: bool = False) -> MessageTemplate:
    subject = (TEST_PREFIX if test else "") + draft.rendered.subject
    issue = Issue(
        number=draft.number, uid="draft", subject=subject,
        period_start=draft.period_start, period_end=draft.period_end,
        html=draft.rendered.html, text=draft.rendered.text,
    )  # fmt: skip
    return issue_template(settings, issue)


def test_send(
    settings: Settings, draft: Draft, addresses: Sequence[str], sender: Sender
) -> list[tuple[str, SendResult]]:
    """A copy of the next issue to each address, subject marked [TEST]; nothing is recorded."""
    try:
        targets = [normalise_address(a) for a in addresses]
    except ValueError as exc:
        raise UsageError(f"--to: {exc}") from None
    template = draft_template(settings, draft, test=True)
    msg = message_settings(settings)
    envelope_from = parseaddr(settings.from_address)[1]
    results = []
    for address in targets:
        recipient = Recipient(
            email=address,
            name="",
            message_id=f"<digest.test.{secrets.token_hex(8)}@{msg.message_id_domain}>",
            # Not a real token: a test copy must not be able to unsubscribe anyone.
            unsubscribe_url=(f"{settings.base_url}/unsubscribe/test-copy" if settings.base_url
                             else msg.mailto_unsubscribe),
        )  # fmt: skip
        results.append((address, sender.send(envelope_from, address, template.render(recipient))))
    return results


def dry_run(
    session: Session, settings: Settings, draft: Draft, folder: Path, sender: Sender
) -> int:
    """Write the message every active subscriber would get; records nothing."""
    template = draft_template(settings, draft)
    msg = message_settings(settings)
    key = settings.secret_key_bytes()
    envelope_from = parseaddr(settings.from_address)[1]
    n = 0
    subs = session.exec(select(Subscriber).where(Subscriber.status == SubscriberStatus.active))
    for sub in subs:
        recipient = Recipient(
            email=sub.email,
            name=sub.name,
            message_id=message_id("dryrun", sub.uid, msg.message_id_domain),
            unsubscribe_url=unsubscribe_url(settings, msg, key, sub.uid),
        )
        sender.send(envelope_from, sub.email, template.render(recipient))
        n += 1
    return n


def preview_files(settings: Settings, draft: Draft, folder: Path) -> dict[str, Path]:
    """digest.html, digest.txt and digest.eml as a subscriber would see them, and views.html
    showing the HTML at desktop and phone widths side by side."""
    template = draft_template(settings, draft)
    msg = message_settings(settings)
    sample = (
        f"{settings.base_url}/unsubscribe/preview" if settings.base_url else msg.mailto_unsubscribe
    )
    recipient = Recipient(
        email="subscriber@example.org",
        name="Preview Reader",
        message_id=f"<digest.preview.{utcnow():%Y%m%d%H%M%S}@{msg.message_id_domain}>",
        unsubscribe_url=sample,
    )
    from digest.render import PLACEHOLDER_UNSUBSCRIBE

    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "html": folder / "digest.html",
        "text": folder / "digest.txt",
        "eml": folder / "digest.eml",
    }
    paths["html"].write_text(draft.rendered.html.replace(PLACEHOLDER_UNSUBSCRIBE, sample), "utf-8")
    paths["text"].write_text(draft.rendered.text.replace(PLACEHOLDER_UNSUBSCRIBE, sample), "utf-8")
    paths["eml"].write_bytes(template.render(recipient))
    from digest.preview import write_views_page

    paths["views"] = write_views_page(folder, f"Issue {draft.number}: {draft.rendered.subject}")
    return paths


def send_next(
    engine: Engine,
    settings: Settings,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    scheduled: bool = False,
    worker: bool = False,
    force: bool = False,
    notify: Callable[[str], None],
    confirm: Callable[[SendPlan], None] | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[int, int], Callable[[SendProgress], None] | None] | None = None,
    now: datetime | None = None,
    note_markdown: str | None = None,
    featured_url: str | None = None,
) -> SendOutcome | None:
    """The whole of `digest send`: decide what to send, freeze it, deliver it.

    Returns None when there is nothing to do. Nothing is frozen before the SMTP server has
    answered, so a send that cannot connect leaves no half-made issue behind.
    """
    now = now or utcnow()
    with send_lock(settings.database_url):
        key: str | None = None
        with session_scope(engine) as session:
            if worker:
                plan = join_plan(session)
                if plan is None:
                    notify("No issue is being sent; nothing for a worker to do.")
                    return None
            elif scheduled:
                decision = plan_scheduled(session, settings, now=now, force=force)
                notify(decision.message)
                if decision.plan is None:
                    return None
                plan, key = decision.plan, decision.key
            else:
                plan = plan_send(session, settings, since=since, until=until,
                                 note_markdown=note_markdown, featured_url=featured_url)  # fmt: skip
                if plan is None:
                    notify("No new items since the last issue; nothing to send.")
                    return None
        if plan.resume is not None:
            if not scheduled:
                notify(f"Resuming issue {plan.resume.number} ({plan.resume.subject}): "
                       f"{plan.recipients} to go.")  # fmt: skip
        else:
            assert plan.draft is not None
            notify(f"Issue {plan.draft.number}: {plan.draft.rendered.subject} "
                   f"({_n(len(plan.draft.items), 'item')}) to {_n(plan.recipients, 'subscriber')}.")  # fmt: skip
            if plan.recipients == 0:
                raise UsageError(
                    "there are no active subscribers",
                    hint="Add some with `digest subscribers add`.",
                )
        if confirm is not None:
            confirm(plan)
        settings.secret_key_bytes()  # fail before anything is frozen
        first = SmtpSender(settings.smtp)
        first.connect()  # exit 75 before anything is frozen if the server is down
        try:
            try:
                with session_scope(engine) as session:
                    issue = start_issue(session, plan, period_key=key)
            except IssueRace:
                if not scheduled:
                    raise
                # Another scheduled run made this period's issue a moment ago: help send it.
                with session_scope(engine) as session:
                    joined = join_plan(session)
                if joined is None or joined.resume is None:
                    notify("Another run already sent this period's issue; nothing to do.")
                    return None
                issue = joined.resume
                notify(f"Issue {issue.number} was just made by another run; helping to send it.")
            with session_scope(engine) as session:
                counts = delivery_counts(session, issue.id or 0)
            on_progress = (
                progress(
                    sum(counts.values()), counts["sent"] + counts["failed"] + counts["skipped"]
                )
                if progress
                else None
            )
            return DeliveryRun(
                engine, settings, issue.id or 0, lambda: SmtpSender(settings.smtp),
                first_sender=first, stop=stop, on_progress=on_progress,
            ).run()  # fmt: skip
        finally:
            first.close()
