"""The subscriber lifecycle behind the public links: double opt-in and unsubscribe by token.

subscribe request -> `pending` (or unchanged) + a confirmation email -> confirm -> `active`;
unsubscribe link -> `unsubscribed`, at once. Every status change goes through
`subscribers.set_status`, so the consent log records when and from where (web, one-click,
import, cli). A confirmation email is logged as a `SubscriberEvent` with the detail
CONFIRMATION_SENT; that log is also what limits them to one per address per cooldown window.

Nothing here knows about HTTP, MIME or SMTP: the web app and the CLI call these functions and
present the result; digest.send.confirm sends the confirmation emails.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from digest.addresses import address_key, normalise_address
from digest.config import Settings
from digest.errors import ConfigError, UsageError
from digest.models import Subscriber, SubscriberEvent, SubscriberStatus, utcnow
from digest.subscribers import ImportReport, add_subscriber, import_subscribers, set_status
from digest.tokens import make_timed_token, read_timed_token, read_token

CONFIRM = "confirm"
UNSUBSCRIBE = "unsubscribe"
CONFIRMATION_SENT = "confirmation sent"
CONFIRMATION_NOT_SENT = "confirmation not sent"


def require_base_url(settings: Settings) -> str:
    """The public address of `digest serve`; links in emails cannot be made without it."""
    if not settings.base_url:
        raise ConfigError(
            "base_url is not set: confirmation and unsubscribe links need the public address "
            "of `digest serve`",
            hint="Set base_url in digest.toml or DIGEST_BASE_URL, e.g. https://news.example.org "
            "(http://127.0.0.1:8000 to try it on this machine).",
        )
    return settings.base_url


def confirm_url(settings: Settings, key: bytes, uid: str, now: datetime) -> str:
    token = make_timed_token(key, CONFIRM, uid, now=now)
    return f"{require_base_url(settings)}/confirm/{token}"


def _by_email(session: Session, email: str) -> Subscriber | None:
    query = select(Subscriber).where(Subscriber.email_key == address_key(email))
    return session.exec(query).first()


def _by_uid(session: Session, uid: str) -> Subscriber | None:
    return session.exec(select(Subscriber).where(Subscriber.uid == uid)).first()


# Subscribe --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfirmationJob:
    """A confirmation email to send, already logged (its event row) so the cooldown holds."""

    event_id: int
    subscriber_uid: str
    email: str
    name: str


def _last_confirmation(session: Session, subscriber_id: int) -> datetime | None:
    return session.exec(
        select(func.max(SubscriberEvent.at)).where(
            SubscriberEvent.subscriber_id == subscriber_id,
            SubscriberEvent.detail == CONFIRMATION_SENT,
        )
    ).one()


def _log_confirmation(
    session: Session, sub: Subscriber, source: str, now: datetime
) -> ConfirmationJob:
    assert sub.id is not None
    event = SubscriberEvent(
        subscriber_id=sub.id, at=now, status=sub.status, source=source, detail=CONFIRMATION_SENT
    )
    session.add(event)
    session.flush()
    assert event.id is not None
    return ConfirmationJob(event.id, sub.uid, sub.email, sub.name)


def request_subscription(
    session: Session,
    settings: Settings,
    *,
    email: str,
    name: str | None = None,
    now: datetime | None = None,
) -> ConfirmationJob | None:
    """Someone asked (on the web) to subscribe `email`.

    A new address becomes `pending`; a pending, unsubscribed or bounced one keeps its status
    until the link is confirmed (an unverified request must not change anyone's status).
    Returns the confirmation email to send, or None when none is due: the address is already
    active, or one was sent within `confirm_cooldown_minutes`. The caller must answer the same
    whatever this returns, so the page says nothing about who is on the list. Raises UsageError
    only for an address that is not valid.
    """
    now = now or utcnow()
    require_base_url(settings)
    try:
        normalised = normalise_address(email)
    except ValueError as exc:
        raise UsageError(f"{email.strip()!r} is not a valid email address: {exc}") from None
    sub = _by_email(session, normalised)
    if sub is None:
        try:
            # The person asks themselves, so an earlier removal (suppression) does not stop it;
            # nothing is sent to them until they confirm.
            sub = add_subscriber(
                session, email=normalised, name=name, status=SubscriberStatus.pending,
                source="web", allow_suppressed=True,
            )  # fmt: skip
        except UsageError:
            sub = _by_email(session, normalised)  # added by a concurrent request
            if sub is None:
                raise
    if sub.status == SubscriberStatus.active:
        return None
    assert sub.id is not None
    last = _last_confirmation(session, sub.id)
    cooldown = timedelta(minutes=settings.confirm_cooldown_minutes)
    if last is not None and now - last < cooldown:
        return None
    return _log_confirmation(session, sub, "web", now)


def import_pending(
    session: Session, path: Path, *, now: datetime | None = None
) -> tuple[ImportReport, list[ConfirmationJob]]:
    """Import a list whose consent must be re-confirmed: every new row is `pending` and gets
    a confirmation email (returned as jobs, logged with the source `import`).

    Rows already on the list that are still pending and were never sent a confirmation get
    one too, so running the same import again retries the emails that did not go out.
    """
    now = now or utcnow()
    before = session.exec(select(func.max(Subscriber.id))).one() or 0
    report = import_subscribers(session, path, status=SubscriberStatus.pending, source="import")
    targets = list(
        session.exec(
            select(Subscriber)
            .where(col(Subscriber.id) > before, Subscriber.status == SubscriberStatus.pending)
            .order_by(col(Subscriber.id))
        ).all()
    )
    keys = list(dict.fromkeys(address_key(email) for _, email in report.duplicates))
    for i in range(0, len(keys), 500):
        for sub in session.exec(
            select(Subscriber)
            .where(col(Subscriber.email_key).in_(keys[i : i + 500]))
            .where(Subscriber.status == SubscriberStatus.pending)
            .order_by(col(Subscriber.id))
        ).all():
            assert sub.id is not None
            if sub.id > before or _last_confirmation(session, sub.id) is not None:
                continue  # added by this import (already a target), or already sent one
            targets.append(sub)
    return report, [_log_confirmation(session, sub, "import", now) for sub in targets]


def mark_confirmation_not_sent(session: Session, event_id: int, reply: str) -> None:
    """The email of this logged confirmation was not accepted: it no longer counts against the
    cooldown, so the person can ask again."""
    session.execute(
        sa.update(SubscriberEvent)
        .where(col(SubscriberEvent.id) == event_id)
        .values(detail=f"{CONFIRMATION_NOT_SENT}: {reply}"[:500])
    )


# Confirm ----------------------------------------------------------------------------------


class ConfirmOutcome(StrEnum):
    confirmed = "confirmed"
    already = "already"


def _confirm_target(
    session: Session, settings: Settings, token: str, now: datetime
) -> tuple[Subscriber, datetime] | None:
    found = read_timed_token(
        settings.secret_key_bytes(), CONFIRM, token,
        max_age=timedelta(days=settings.confirm_token_days), now=now,
    )  # fmt: skip
    if found is None:
        return None
    uid, issued = found
    sub = _by_uid(session, uid)
    if sub is None:
        return None
    left = sub.status in (SubscriberStatus.unsubscribed, SubscriberStatus.bounced)
    if left and int(sub.status_changed_at.timestamp()) > int(issued.timestamp()):
        return None  # only a link asked for after they left can bring them back
    return sub, issued


def check_confirm_token(
    session: Session, settings: Settings, token: str, *, now: datetime | None = None
) -> bool:
    """Whether `token` would confirm someone now; reads only (for the GET page)."""
    return _confirm_target(session, settings, token, now or utcnow()) is not None


def confirm_subscription(
    session: Session, settings: Settings, token: str, *, now: datetime | None = None
) -> ConfirmOutcome | None:
    """Make the subscriber a valid confirm token names `active` (recording when and that it
    came from the web). None for a tampered, expired, foreign or outdated token."""
    target = _confirm_target(session, settings, token, now or utcnow())
    if target is None:
        return None
    sub, _ = target
    if sub.status == SubscriberStatus.active:
        return ConfirmOutcome.already
    detail = "confirmed by email link"
    if sub.status != SubscriberStatus.pending:
        detail = f"subscribed again ({sub.status} before), confirmed by email link"
    set_status(session, sub, SubscriberStatus.active, source="web", detail=detail)
    return ConfirmOutcome.confirmed


# Unsubscribe ------------------------------------------------------------------------------


def check_unsubscribe_token(settings: Settings, token: str) -> bool:
    return read_token(settings.secret_key_bytes(), UNSUBSCRIBE, token) is not None


def unsubscribe_by_token(
    session: Session, settings: Settings, token: str, *, source: str = "web"
) -> bool | None:
    """Unsubscribe the person a valid unsubscribe token names, at once.

    True when their status changed, False when there was nothing to do (already unsubscribed,
    or erased since), None for a tampered or foreign token. `source` is "one-click" for the
    RFC 8058 POST of a mail client, "web" for the button on our page.
    """
    uid = read_token(settings.secret_key_bytes(), UNSUBSCRIBE, token)
    if uid is None:
        return None
    sub = _by_uid(session, uid)
    if sub is None:
        return False  # erased with `subscribers remove`: nothing will be sent to them
    return set_status(
        session, sub, SubscriberStatus.unsubscribed, source=source, detail="unsubscribe link"
    )


# Purge ------------------------------------------------------------------------------------


def purge_pending(
    session: Session, *, older_than: timedelta, now: datetime | None = None, dry_run: bool = False
) -> list[str]:
    """Erase `pending` subscribers who never confirmed: pending for longer than `older_than`
    and sent no confirmation email within it. Returns their addresses.

    No suppression record is kept: they never confirmed, so they may not have asked at all.
    """
    cutoff = (now or utcnow()) - older_than
    recent = (
        select(SubscriberEvent.id)
        .where(col(SubscriberEvent.subscriber_id) == col(Subscriber.id))
        .where(SubscriberEvent.at >= cutoff)
    )
    stale = session.exec(
        select(Subscriber)
        .where(Subscriber.status == SubscriberStatus.pending)
        .where(Subscriber.status_changed_at < cutoff)
        .where(~recent.exists())
        .order_by(col(Subscriber.id))
    ).all()
    emails = [s.email for s in stale]
    if not dry_run:
        for sub in stale:
            session.delete(sub)
        session.flush()
    return emails
