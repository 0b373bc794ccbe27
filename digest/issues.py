"""Select the items of the next issue, render it, and freeze it with its recipients."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from digest.config import Settings
from digest.errors import DigestError, NotFoundError, UsageError
from digest.models import (
    TERMINAL_DELIVERY,
    Delivery,
    DeliveryStatus,
    Issue,
    IssueItem,
    IssueStatus,
    NewsItem,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from digest.render.fit import GMAIL_CLIP_BYTES
from digest.render.issue import Branding, ItemView, RenderedIssue, render_issue


def branding(settings: Settings) -> Branding:
    return Branding(
        name=settings.name,
        organisation=settings.organisation,
        postal_address=settings.postal_address,
        base_url=settings.base_url,
        timezone=settings.tz,
        subject_template=settings.subject,
        logo_url=settings.logo_url,
        accent_colour=settings.accent_colour,
        footer_text=settings.footer_text,
        language=settings.language,
    )


@dataclass(frozen=True)
class Draft:
    """What the next issue would be: its number, period, items and rendered content."""

    number: int
    period_start: datetime
    period_end: datetime
    items: Sequence[NewsItem]
    rendered: RenderedIssue
    message_id_domain: str = ""  # frozen into the issue: its Message-IDs never change


def read_note(path: str | Path) -> str:
    """The Markdown of an editor's note file (`--note FILE.md`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--note: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--note: cannot read {path}: {exc}") from None
    if len(text) > 20_000:
        raise UsageError(f"--note: {path} is {len(text)} characters; keep a note under 20,000")
    return text


def last_issue(session: Session) -> Issue | None:
    return session.exec(select(Issue).order_by(col(Issue.number).desc())).first()


def default_window(
    session: Session, settings: Settings, now: datetime
) -> tuple[datetime, datetime]:
    """Since the end of the last issue, or `lookback_days` back on the first run; until now."""
    last = last_issue(session)
    since = last.period_end if last else now - timedelta(days=settings.lookback_days)
    return since, now


def select_items(
    session: Session, since: datetime, until: datetime, *, late: timedelta = timedelta(0)
) -> Sequence[NewsItem]:
    """Items no earlier issue carried, published before `until`, newest first: those published
    since `since`, and those that arrived since then with a date up to `late` earlier (a feed
    fetched after the last issue went out must not lose its items)."""
    already = select(IssueItem.news_item_id).where(col(IssueItem.news_item_id).is_not(None))
    query = (
        select(NewsItem)
        .where(NewsItem.published_at < until)
        .where(
            sa.or_(
                col(NewsItem.published_at) >= since,
                sa.and_(
                    col(NewsItem.created_at) >= since, col(NewsItem.published_at) >= since - late
                ),
            )
        )
        .where(col(NewsItem.id).not_in(already))
        .order_by(col(NewsItem.published_at).desc(), col(NewsItem.id))
    )
    return session.exec(query).all()


def _views(items: Sequence[NewsItem]) -> list[ItemView]:
    return [
        ItemView(
            title=i.title,
            url=i.url,
            summary_html=i.summary_html,
            category=i.category,
            published_at=i.published_at,
            source=i.source,
        )
        for i in items
    ]


@dataclass(frozen=True)
class NextIssue:
    """What staff may say about the next issue: its period (default: since the last issue)
    and an editor's note (Markdown) and featured item (the link of one of its items)."""

    since: datetime | None = None
    until: datetime | None = None
    note_markdown: str | None = None
    featured_url: str | None = None

    @property
    def shaped(self) -> bool:
        """A note or a featured item: only a new issue can have them."""
        return bool(self.note_markdown or self.featured_url)


def draft_issue(
    session: Session,
    settings: Settings,
    shape: NextIssue | None = None,
    *,
    now: datetime | None = None,
) -> Draft | None:
    """Render the next issue without storing anything; None when there are no new items.

    The note and the featured item are rendered into the issue here, so they are frozen with it.
    """
    shape = shape or NextIssue()
    now = now or utcnow()
    d_since, d_until = default_window(session, settings, now)
    since, until = shape.since or d_since, shape.until or d_until
    if since >= until:
        raise DigestError(
            f"the period is empty: --since {since:%Y-%m-%d %H:%M} is not before "
            f"--until {until:%Y-%m-%d %H:%M} (UTC)"
        )
    items = select_items(session, since, until, late=timedelta(days=settings.lookback_days))
    if not items:
        return None
    last = last_issue(session)
    number = (last.number + 1) if last else 1
    rendered = render_issue(
        branding(settings),
        _views(items),
        period_start=since,
        period_end=until,
        number=number,
        templates_dir=settings.templates_dir,
        note_markdown=shape.note_markdown,
        featured_url=shape.featured_url,
    )
    return Draft(
        number=number, period_start=since, period_end=until, items=items, rendered=rendered,
        message_id_domain=settings.from_domain,
    )  # fmt: skip


def active_count(session: Session) -> int:
    return session.exec(
        select(func.count())
        .select_from(Subscriber)
        .where(Subscriber.status == SubscriberStatus.active)
    ).one()


class IssueRace(DigestError):
    """Another process made the same issue (same number or period) at the same moment."""


class TooLarge(DigestError):
    """An issue Gmail would clip (hiding its footer and unsubscribe link): never sent."""


def ensure_fits(draft: Draft) -> None:
    """Refuse an issue whose HTML is still over Gmail's clipping limit after the size guard
    (it had nowhere to leave the rest: no base_url, so no web archive to link to)."""
    size = len(draft.rendered.html.encode("utf-8"))
    if size <= GMAIL_CLIP_BYTES:
        return
    n = len(draft.items)
    fit = draft.rendered.fit
    if fit is None or not fit.archived:
        hint = (
            "Set base_url (the public address of `digest serve`): the size guard then leaves "
            "the items that do not fit to the issue's web version and links to it. Or send "
            "fewer items at a time (`digest send --since … --until …`)."
        )
    else:
        hint = "Send fewer items at a time (`digest send --since … --until …`)."
    raise TooLarge(
        f"issue {draft.number} would be {size / 1000:,.0f} KB of HTML ({n} items), over "
        f"Gmail's clipping limit of about {GMAIL_CLIP_BYTES / 1000:.0f} KB: readers would not "
        "see the rest, the unsubscribe link included; nothing was sent",
        hint=hint,
    )


def create_issue(session: Session, draft: Draft, *, period_key: str | None = None) -> Issue:
    """Freeze the draft: the issue, a copy of its items, and one queued delivery for every
    active subscriber, all in the caller's transaction. Later subscribers are not in it.

    An issue too large to reach readers whole (`ensure_fits`) is refused first: TooLarge."""
    ensure_fits(draft)
    issue = Issue(
        number=draft.number,
        uid=secrets.token_hex(8),
        status=IssueStatus.sending,
        subject=draft.rendered.subject,
        period_start=draft.period_start,
        period_end=draft.period_end,
        html=draft.rendered.html,
        text=draft.rendered.text,
        period_key=period_key,
        message_id_domain=draft.message_id_domain or None,
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
    delivery = Delivery.__table__  # type: ignore[attr-defined]
    subscriber = Subscriber.__table__  # type: ignore[attr-defined]
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
            .where(subscriber.c.status == SubscriberStatus.active.value)
            .order_by(subscriber.c.id),
        )
    )
    session.flush()
    return issue


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
    rows = session.exec(
        select(Delivery.status, func.count())
        .where(Delivery.issue_id == issue_id)
        .group_by(Delivery.status)
    ).all()
    counts = {s.value: 0 for s in DeliveryStatus}
    counts.update({status: n for status, n in rows})
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


@dataclass(frozen=True)
class IssueDetail:
    issue: Issue
    counts: dict[str, int]
    items: Sequence[IssueItem]
    problems: list[tuple[str, str, int, str]]  # see problem_deliveries
    feedback: dict[str, int] = field(default_factory=dict)  # bounce events by kind (inbound/)


def issue_detail(session: Session, number: int) -> IssueDetail:
    """One issue (`digest issues show`): its delivery counts, its items, and its failed and
    deferred deliveries with the server's last reply."""
    issue = get_issue(session, number)
    issue_id = issue.id or 0
    from digest.inbound.act import issue_feedback_counts

    return IssueDetail(
        issue, delivery_counts(session, issue_id), issue_items(session, issue_id),
        problem_deliveries(session, issue_id), issue_feedback_counts(session, issue_id),
    )  # fmt: skip


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


def cancel_issue(session: Session, number: int, *, reason: str = "issue cancelled") -> int:
    """Stop an unfinished issue: deliveries not yet made are skipped, never sent."""
    issue = get_issue(session, number)
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
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
