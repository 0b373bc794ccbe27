"""Personalise, send and record: the resumable, idempotent send loop of one issue.

Each delivery row moves queued -> sending -> sent | deferred | failed | skipped and is
committed as it moves. A worker claims a small batch with a lease; a row still `sending`
after its worker died is claimed again and re-sent with the same Message-ID, so only the
messages in flight at a crash can arrive twice. The issue is done only when every row is.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from digest.config import Settings
from digest.db import sqlite_path
from digest.errors import DigestError
from digest.issues import delivery_counts, finish_if_done
from digest.mailer import Sender, SendResult
from digest.message import MessageSettings, MessageTemplate, Recipient
from digest.models import Delivery, DeliveryStatus, Issue, Subscriber, SubscriberStatus, utcnow
from digest.tokens import make_token

LEASE = timedelta(minutes=5)
BACKOFF_CAP = timedelta(hours=1)


def message_settings(settings: Settings) -> MessageSettings:
    domain = settings.from_domain
    slug = re.sub(r"[^a-z0-9]+", "-", settings.name.lower()).strip("-") or "digest"
    unsub = settings.unsubscribe_mailto or settings.from_address
    return MessageSettings(
        from_address=settings.from_address,
        reply_to=settings.reply_to,
        list_id=settings.list_id or f"{settings.name} <{slug}.{domain}>",
        mailto_unsubscribe=f"mailto:{parseaddr(unsub)[1]}?subject=unsubscribe",
        message_id_domain=domain,
    )


def unsubscribe_url(settings: Settings, msg: MessageSettings, key: bytes, uid: str) -> str:
    if settings.base_url:
        return f"{settings.base_url}/unsubscribe/{make_token(key, 'unsubscribe', uid)}"
    return msg.mailto_unsubscribe


def message_id(issue_uid: str, subscriber_uid: str, domain: str) -> str:
    """Stable per (issue, subscriber): a retry of the same delivery reuses it."""
    return f"<digest.{issue_uid}.{subscriber_uid}@{domain}>"


def issue_template(settings: Settings, issue: Issue, date: datetime | None = None) -> MessageTemplate:
    from digest.dkim import load_signer

    return MessageTemplate(
        settings=message_settings(settings),
        subject=issue.subject,
        html_body=issue.html,
        text_body=issue.text,
        date=date or utcnow(),
        signer=load_signer(settings),  # DKIM when configured: key read once per issue
    )


@dataclass
class SendProgress:
    total: int = 0
    done_before: int = 0  # rows already terminal when this run started
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    skipped: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def processed(self) -> int:
        return self.sent + self.failed + self.skipped

    def count(self, status: str) -> None:
        if status == DeliveryStatus.deferred:
            self.deferred += 1
        elif status in ("sent", "failed", "skipped"):
            setattr(self, status, getattr(self, status) + 1)


@dataclass
class SendOutcome:
    issue_number: int
    finished: bool
    counts: dict[str, int]
    interrupted: bool = False
    next_retry_at: datetime | None = None


class SendLockBusy(DigestError):
    pass


@contextmanager
def send_lock(database_url: str) -> Iterator[None]:
    """One sender at a time on a SQLite file (an OS lock next to the database).

    PostgreSQL needs no lock: workers claim rows with FOR UPDATE SKIP LOCKED.
    """
    path = sqlite_path(database_url)
    if path is None:
        yield
        return
    lock_path = path.with_name(path.name + ".send-lock")
    fh = lock_path.open("a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise SendLockBusy(
                f"another `digest send` ({holder}) is sending from {path}; this one is stopping",
                hint="Wait for it to finish; run `digest issues list` to watch its progress.",
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
        fh.flush()
        yield
    finally:
        fh.close()


class DeliveryRun:
    """Sends one issue's outstanding deliveries with one worker identity."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        issue_id: int,
        sender: Sender,
        *,
        stop: threading.Event | None = None,
        on_progress: Callable[[SendProgress], None] | None = None,
        retry_wait: float = 0.0,
        retry_base: float = 60.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.issue_id = issue_id
        self.sender = sender
        self.stop = stop or threading.Event()
        self.on_progress = on_progress
        self.retry_wait = retry_wait
        self.retry_base = retry_base
        self.clock = clock
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"[:100]
        self.sqlite = engine.dialect.name == "sqlite"
        self.lifetime = timedelta(hours=settings.retry_lifetime_hours)
        self.rate = settings.send_rate
        self.batch_size = 50 if not self.rate else max(1, min(50, int(self.rate)))

    # Claims --------------------------------------------------------------------------------

    def _reclaim(self, session: Session, now: datetime) -> None:
        """Rows left `sending` by a dead worker go back to the queue.

        On SQLite we hold the send lock, so every such row is orphaned; elsewhere only rows
        whose lease has run out are.
        """
        stmt = sa.update(Delivery).where(
            col(Delivery.issue_id) == self.issue_id, col(Delivery.status) == DeliveryStatus.sending
        )
        if not self.sqlite:
            stmt = stmt.where(col(Delivery.lease_expires_at) < now)
        session.execute(
            stmt.values(status=DeliveryStatus.queued, lease_owner=None, lease_expires_at=None)
        )
        session.commit()

    def _claim(self, session: Session, now: datetime) -> list[tuple[int, Subscriber | None]]:
        self._reclaim(session, now)
        due = (
            select(Delivery.id)
            .where(Delivery.issue_id == self.issue_id)
            .where(col(Delivery.status).in_([DeliveryStatus.queued, DeliveryStatus.deferred]))
            .where(sa.or_(col(Delivery.next_attempt_at).is_(None), col(Delivery.next_attempt_at) <= now))
            .order_by(col(Delivery.id))
            .limit(self.batch_size)
        )
        if not self.sqlite:
            due = due.with_for_update(skip_locked=True)
        ids = list(session.exec(due).all())
        if not ids:
            session.commit()
            return []
        session.execute(
            sa.update(Delivery)
            .where(col(Delivery.id).in_(ids))
            .values(
                status=DeliveryStatus.sending,
                lease_owner=self.worker,
                lease_expires_at=now + LEASE,
                updated_at=now,
            )
        )
        session.commit()
        rows = session.exec(
            select(Delivery.id, Subscriber)
            .join(Subscriber, col(Subscriber.id) == col(Delivery.subscriber_id), isouter=True)
            .where(col(Delivery.id).in_(ids))
            .order_by(col(Delivery.id))
        ).all()
        session.commit()
        return [(int(i), s) for i, s in rows]

    def _record(self, session: Session, delivery_id: int, status: DeliveryStatus, **values: Any) -> None:
        now = self.clock()
        session.execute(
            sa.update(Delivery)
            .where(col(Delivery.id) == delivery_id, col(Delivery.lease_owner) == self.worker)
            .values(status=status, lease_owner=None, lease_expires_at=None, updated_at=now, **values)
        )
        session.commit()

    def _release(self, session: Session, ids: list[int]) -> None:
        if ids:
            session.execute(
                sa.update(Delivery)
                .where(col(Delivery.id).in_(ids), col(Delivery.lease_owner) == self.worker)
                .values(status=DeliveryStatus.queued, lease_owner=None, lease_expires_at=None)
            )
            session.commit()

    # The loop ------------------------------------------------------------------------------

    def run(self) -> SendOutcome:
        with Session(self.engine, expire_on_commit=False) as session:
            issue = session.get(Issue, self.issue_id)
            assert issue is not None
            key = self.settings.secret_key_bytes()
            msg_settings = message_settings(self.settings)
            template = issue_template(self.settings, issue)
            envelope_from = parseaddr(self.settings.from_address)[1]
            counts = delivery_counts(session, self.issue_id)
            progress = SendProgress(
                total=sum(counts.values()),
                done_before=counts["sent"] + counts["failed"] + counts["skipped"],
            )
            interval = 1.0 / self.rate if self.rate else 0.0
            next_slot = time.monotonic()
            backoff = 0.0
            wait_deadline = time.monotonic() + self.retry_wait
            while not self.stop.is_set():
                batch = self._claim(session, self.clock())
                if not batch:
                    if self._wait_for_retries(session, wait_deadline):
                        continue
                    break
                for n, (delivery_id, sub) in enumerate(batch):
                    if self.stop.is_set():
                        self._release(session, [d for d, _ in batch[n:]])
                        break
                    current = self._status_now(session, sub)
                    if sub is None or current != SubscriberStatus.active:
                        # Unsubscribed, bounced or erased since the issue was made: never sent.
                        self._record(session, delivery_id, DeliveryStatus.skipped,
                                     last_reply=f"subscriber {current}")  # fmt: skip
                        progress.count("skipped")
                        continue
                    if interval:
                        delay = next_slot - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                        next_slot = max(next_slot + interval, time.monotonic())
                    recipient = Recipient(
                        email=sub.email,
                        name=sub.name,
                        message_id=message_id(issue.uid, sub.uid, msg_settings.message_id_domain),
                        unsubscribe_url=unsubscribe_url(self.settings, msg_settings, key, sub.uid),
                    )
                    result = self.sender.send(envelope_from, sub.email, template.render(recipient))
                    status = self._apply(session, delivery_id, result)
                    progress.count(status)
                    if self.on_progress:
                        self.on_progress(progress)
                    if result.throttled:
                        # The server asks us to slow down: pause the whole run, growing each time.
                        backoff = min(max(backoff * 2, 0.5), 30.0)
                        self.stop.wait(backoff)
                    else:
                        backoff = 0.0
            interrupted = self.stop.is_set()
            finished = finish_if_done(session, issue)
            session.commit()
            counts = delivery_counts(session, self.issue_id)
            next_retry = session.exec(
                select(sa.func.min(Delivery.next_attempt_at)).where(
                    Delivery.issue_id == self.issue_id, Delivery.status == DeliveryStatus.deferred
                )
            ).one()
            return SendOutcome(issue.number, finished, counts, interrupted, next_retry)

    def _status_now(self, session: Session, sub: Subscriber | None) -> str:
        """The subscriber's status now, not when the batch was claimed: an unsubscribe that
        arrives while the batch is being sent (a one-click POST) must still stop their copy."""
        if sub is None:
            return "removed"
        current = session.exec(select(Subscriber.status).where(Subscriber.id == sub.id)).first()
        return current or "removed"

    def _wait_for_retries(self, session: Session, deadline: float) -> bool:
        """Sleep until the next deferred row is due if that is before `deadline`."""
        next_at = session.exec(
            select(sa.func.min(Delivery.next_attempt_at)).where(
                Delivery.issue_id == self.issue_id, Delivery.status == DeliveryStatus.deferred
            )
        ).one()
        session.commit()
        if next_at is None:
            return False
        delay = (next_at - self.clock()).total_seconds()
        if time.monotonic() + max(delay, 0) > deadline:
            return False
        self.stop.wait(max(delay, 0.0) + 0.01)
        return not self.stop.is_set()

    def _apply(self, session: Session, delivery_id: int, result: SendResult) -> DeliveryStatus:
        now = self.clock()
        delivery = session.get(Delivery, delivery_id, populate_existing=True)
        assert delivery is not None
        attempts = delivery.attempts + 1
        first = delivery.first_attempt_at or now
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_reply": result.reply,
            "first_attempt_at": first,
        }
        if result.outcome == "sent":
            status = DeliveryStatus.sent
            values["sent_at"] = now
        elif result.outcome == "permanent":
            status = DeliveryStatus.failed
        elif now - first >= self.lifetime:
            status = DeliveryStatus.failed
            values["last_reply"] = f"gave up after {attempts} attempts: {result.reply}"[:500]
        else:
            status = DeliveryStatus.deferred
            delay = timedelta(seconds=self.retry_base * 2 ** (attempts - 1))
            values["next_attempt_at"] = now + min(delay, BACKOFF_CAP)
        session.expunge(delivery)
        self._record(session, delivery_id, status, **values)
        return status
