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

import ipaddress
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from digest.addresses import address_key, normalise_address
from digest.config import Settings
from digest.errors import ConfigError, TooManyRequests, UsageError
from digest.models import Subscriber, SubscriberEvent, SubscriberStatus, utcnow
from digest.subscribers import ImportReport, claim_subscriber, import_subscribers, set_status
from digest.tokens import Keyring, TokenCheck, check_timed_token, check_token, make_timed_token

log = logging.getLogger("digest.lifecycle")


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


def client_marker(settings: Settings, host: str | None) -> str:
    """What the consent log records about a web client: nothing (consent_client = "off"), or
    its network ("network": IPv4 /24, IPv6 /48), never the address itself."""
    if settings.consent_client == "off" or not host:
        return ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def _log_confirmation(
    session: Session, sub: Subscriber, source: str, now: datetime, client: str = ""
) -> ConfirmationJob:
    event = SubscriberEvent.of(sub, now, source, CONFIRMATION_SENT, client)
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
    client: str = "",
) -> ConfirmationJob | None:
    """Someone asked (on the web) to subscribe `email`; `client` is the consent log's marker
    of who asked (`client_marker`).

    A new address becomes `pending`; a pending, unsubscribed or bounced one keeps its status
    until the link is confirmed (an unverified request must not change anyone's status).
    Returns the confirmation email to send, or None when none is due: the address is already
    active, or one was sent within `confirm_cooldown_minutes`. The caller must answer the same
    whatever this returns, so the page says nothing about who is on the list. Raises UsageError
    for an address that is not valid, TooManyRequests (changing nothing) when the web has had
    `confirm_limit_total` confirmation emails in the last hour.
    """
    now = now or utcnow()
    require_base_url(settings)
    try:
        normalised = normalise_address(email, allow_special_use=settings.allow_special_use_domains)
    except ValueError as exc:
        raise UsageError(f"{email.strip()!r} is not a valid email address: {exc}") from None
    _check_total_limit(session, settings, now)
    # The person asks themselves, so an earlier removal (suppression) does not stop it; nothing
    # is sent to them until they confirm. Concurrent requests for one address take turns here.
    sub = claim_subscriber(session, email=normalised, name=name, source="web", client=client)
    if sub.status == SubscriberStatus.active:
        return None
    assert sub.id is not None
    last = _last_confirmation(session, sub.id)
    cooldown = timedelta(minutes=settings.confirm_cooldown_minutes)
    if last is not None and now - last < cooldown:
        return None
    return _log_confirmation(session, sub, "web", now, client)


LIMIT_WINDOW = timedelta(hours=1)


def _check_total_limit(session: Session, settings: Settings, now: datetime) -> None:
    """Refuse when the web has had `confirm_limit_total` confirmation emails sent in the last
    hour (counted in the database, so every `digest serve` process shares it)."""
    limit = settings.confirm_limit_total
    if not limit:
        return
    since = now - LIMIT_WINDOW
    recent = session.exec(
        select(SubscriberEvent.at)
        .where(SubscriberEvent.detail == CONFIRMATION_SENT, SubscriberEvent.source == "web")
        .where(col(SubscriberEvent.at) > since)
        .order_by(col(SubscriberEvent.at))
        .limit(limit)
    ).all()
    if len(recent) >= limit:
        wait = recent[0] + LIMIT_WINDOW - now
        raise TooManyRequests(
            f"more than {limit} confirmation emails were asked for in the last hour",
            retry_after=max(int(wait.total_seconds()) + 1, 1),
        )


def import_pending(
    session: Session,
    path: Path,
    *,
    keyring: Keyring,
    reactivate: bool = False,
    allow_special_use: bool = False,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> tuple[ImportReport, list[ConfirmationJob]]:
    """Import a list whose consent must be re-confirmed: every new row is `pending` and gets
    a confirmation email (returned as jobs, logged with the source `import`). Rows that say
    `unsubscribed` or `bounced` stay so, and get nothing, unless `reactivate`.

    Rows already on the list that are still pending and were never sent a confirmation get
    one too, so running the same import again retries the emails that did not go out.
    """
    now = now or utcnow()
    before = session.exec(select(func.max(Subscriber.id))).one() or 0
    report = import_subscribers(
        session, path, keyring=keyring, status=SubscriberStatus.pending, reactivate=reactivate,
        source="import", allow_special_use=allow_special_use, settings=settings,
    )  # fmt: skip
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
    # Only the current key confirms: a retired key may have been retired because it leaked,
    # and a confirmation widens consent. (Unsubscribe links, which narrow it, take any key.)
    check, issued = check_timed_token(
        settings.keyring(), CONFIRM, token,
        max_age=timedelta(days=settings.confirm_token_days), now=now,
    )  # fmt: skip
    _note_key(check, "a confirmation")
    if check.uid is None or issued is None:
        return None
    uid = check.uid
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
    session: Session,
    settings: Settings,
    token: str,
    *,
    now: datetime | None = None,
    client: str = "",
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
    set_status(session, sub, SubscriberStatus.active, source="web", detail=detail, client=client)
    return ConfirmOutcome.confirmed


# Unsubscribe ------------------------------------------------------------------------------


def _note_key(check: TokenCheck, what: str) -> None:
    """Say in the log when a link names a key we do not have, or a retired one: the first
    is what a DIGEST_SECRET_KEY that differs between `digest send` and `digest serve` does."""
    if check.unknown_key:
        log.warning(
            "%s link was signed with key id %s, which this server does not have: is the "
            "secret key (DIGEST_SECRET_KEY or the key file) the same for `digest send` and "
            "`digest serve`? Put a retired key in retired_keys_file to honour its links.",
            what, check.key_id,
        )  # fmt: skip
    elif check.retired and not check.valid:
        log.info("%s link signed with the retired key %s was refused", what, check.key_id)
    elif check.retired:
        log.info("%s link signed with the retired key %s was honoured", what, check.key_id)


def _unsubscribe_check(settings: Settings, token: str) -> TokenCheck:
    check = check_token(settings.keyring(), UNSUBSCRIBE, token, retired_ok=True)
    _note_key(check, "an unsubscribe")
    return check


def check_unsubscribe_token(settings: Settings, token: str) -> bool:
    return _unsubscribe_check(settings, token).valid


def unsubscribe_by_token(
    session: Session, settings: Settings, token: str, *, source: str = "web", client: str = ""
) -> bool | None:
    """Unsubscribe the person a valid unsubscribe token names, at once.

    True when their status changed, False when there was nothing to do (already unsubscribed,
    or erased since), None for a tampered or foreign token. `source` is "one-click" for the
    RFC 8058 POST of a mail client, "web" for the button on our page.
    """
    uid = _unsubscribe_check(settings, token).uid
    if uid is None:
        return None
    sub = _by_uid(session, uid)
    if sub is None:
        return False  # erased with `subscribers remove`: nothing will be sent to them
    return set_status(
        session, sub, SubscriberStatus.unsubscribed, source=source, detail="unsubscribe link",
        client=client,
    )  # fmt: skip


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
