"""Send and record (stages 7 and 8): the resumable, idempotent send loop of one issue.

Each delivery row moves queued -> sending -> sent | deferred | failed | skipped and is
committed as it moves. A worker claims a small batch with a lease; a row still `sending`
after its worker died is claimed again and re-sent with the same Message-ID, so only the
messages in flight at a crash can arrive twice. The issue is done only when every row is.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from digest.compose.recipients import Recipients, compose_issue
from digest.compose.wire import MessageTemplate, Recipient
from digest.config import Settings
from digest.errors import DigestError, SmtpUnavailable
from digest.issues import delivery_counts, finish_if_done
from digest.models import Delivery, DeliveryStatus, Issue, Subscriber, SubscriberStatus, utcnow
from digest.send.mailer import Sender, SendResult
from digest.send.pacing import Pacer
from digest.send.policy import BACKOFF_CAP


@dataclass
class SendProgress:
    total: int = 0
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    skipped: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def processed(self) -> int:
        return self.sent + self.failed + self.skipped

    def count(self, status: str) -> None:
        if status in ("sent", "failed", "skipped", "deferred"):
            setattr(self, status, getattr(self, status) + 1)


@dataclass
class SendOutcome:
    issue_number: int
    finished: bool
    counts: dict[str, int]
    interrupted: bool = False
    next_retry_at: datetime | None = None
    unavailable: str | None = None  # the server stayed unreachable: the reason


class _Who(NamedTuple):
    id: int
    uid: str
    email: str
    name: str


@dataclass(frozen=True, slots=True)
class _Job:
    delivery_id: int
    attempts: int
    first_attempt_at: datetime | None
    recipient: Recipient


@dataclass(frozen=True, slots=True)
class _Done:
    job: _Job
    result: SendResult | None  # None: the server could not be reached, nothing was tried
    error: str = ""
    fatal: bool = False  # a setup problem (login, certificate): stop, don't retry


class DeliveryRun:
    """Sends one issue's outstanding deliveries over a pool of SMTP connections.

    One thread per connection sends; this thread claims rows, checks each subscriber is
    still active just before their message is handed to a connection, and records every
    outcome. It is the only thread that talks to the database.
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        issue_id: int,
        sender_factory: Callable[[], Sender],
        *,
        first_sender: Sender | None = None,
        stop: threading.Event | None = None,
        on_progress: Callable[[SendProgress], None] | None = None,
        retry_wait: float | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.issue_id = issue_id
        self.sender_factory = sender_factory
        self.first_sender = first_sender
        self.stop = stop or threading.Event()
        self.on_progress = on_progress
        self.retry_wait = settings.retry_wait_seconds if retry_wait is None else retry_wait
        self.retry_base = settings.retry_base_seconds
        self.clock = clock
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"[:100]
        self.sqlite = engine.dialect.name == "sqlite"
        self.lifetime = timedelta(hours=settings.retry_lifetime_hours)
        self.lease = timedelta(seconds=settings.lease_seconds)
        self.connections = settings.smtp_connections
        self.pacer = Pacer(settings.send_rate, settings.send_rate_per_hour)
        # Claim enough to keep every connection busy, but few enough that a slow, paced run
        # still renews its leases long before they run out.
        per_lease = self.pacer.base and settings.lease_seconds / 3 / self.pacer.base
        self.batch_size = max(self.connections, min(512, 16 * self.connections))
        if per_lease:
            self.batch_size = max(1, min(self.batch_size, int(per_lease)))
        self._t = {
            "delivery": Delivery.__table__,  # type: ignore[attr-defined]
            "subscriber": Subscriber.__table__,  # type: ignore[attr-defined]
        }

    # Database: claims and records -------------------------------------------------------------

    def _reclaim(self, conn: sa.Connection, now: datetime) -> None:
        """Rows left `sending` by a dead worker go back to the queue.

        On SQLite we hold the send lock, so every such row is orphaned; elsewhere only rows
        whose lease has run out are.
        """
        d = self._t["delivery"]
        stmt = sa.update(d).where(
            d.c.issue_id == self.issue_id, d.c.status == DeliveryStatus.sending.value
        )
        if not self.sqlite:
            stmt = stmt.where(d.c.lease_expires_at < now)
        else:
            stmt = stmt.where(sa.or_(d.c.lease_owner.is_(None), d.c.lease_owner != self.worker))
        conn.execute(
            stmt.values(status=DeliveryStatus.queued.value, lease_owner=None, lease_expires_at=None)
        )

    def _claim(self, now: datetime) -> list[tuple[int, int, datetime | None, _Who | None]]:
        """Take the next batch of due rows with a lease: plain SQL on the main connection
        (three statements per batch; SKIP LOCKED lets PostgreSQL workers share the queue)."""
        args: list[Any] = [self.issue_id, self._ts(now)]
        where = (
            "issue_id = ? AND status IN ('queued', 'deferred') "
            "AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
        )
        if time.monotonic() > self.retry_deadline:
            # Past this run's retry window: rows deferred during this run wait for the next
            # run; rows deferred by an earlier run still get their try now.
            where += " AND (status = 'queued' OR updated_at < ?)"
            args.append(self._ts(self.started_at))
        # no ORDER BY: sorting the whole queue for every claim would be O(n)
        # fixed text and placeholders only; every value is a bound parameter
        select_due = f"SELECT id FROM delivery WHERE {where} LIMIT {int(self.batch_size)}"  # noqa: S608
        if not self.sqlite:
            select_due += " FOR UPDATE SKIP LOCKED"
        cur = self._raw.cursor()
        try:
            cur.execute(self._sql(select_due), args)
            ids = [row[0] for row in cur.fetchall()]
            if not ids:
                self._raw.commit()
                return []
            marks = ",".join("?" * len(ids))
            cur.execute(
                self._sql(
                    "UPDATE delivery SET status = 'sending', lease_owner = ?, "  # noqa: S608
                    f"lease_expires_at = ?, updated_at = ? WHERE id IN ({marks})"
                ),
                [self.worker, self._ts(now + self.lease), self._ts(now), *ids],
            )
            self._raw.commit()
            cur.execute(
                self._sql(
                    "SELECT d.id, d.attempts, d.first_attempt_at, s.id, s.uid, s.email, s.name "  # noqa: S608
                    "FROM delivery d LEFT JOIN subscriber s ON s.id = d.subscriber_id "
                    f"WHERE d.id IN ({marks}) ORDER BY d.id"
                ),
                ids,
            )
            rows = cur.fetchall()
            self._raw.commit()
        finally:
            cur.close()
        # Plain tuples: building a model object per row cost more than the whole claim.
        return [
            (did, attempts, self._dt(first), _Who(sid, uid, email, name) if sid else None)
            for did, attempts, first, sid, uid, email, name in rows
        ]

    def _dt(self, value: Any) -> datetime | None:
        """A datetime read through the raw connection (SQLite gives naive UTC text)."""
        if value is None or isinstance(value, datetime) and value.tzinfo is not None:
            return value
        moment: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
        return moment.replace(tzinfo=UTC)

    # The hot path (a status read and a group of outcomes per loop) goes through one DB-API
    # connection with plain SQL: building SQLAlchemy statements cost more than the database.

    def _sql(self, text: str) -> str:
        return text if self._qmark else text.replace("?", "%s")

    def _ts(self, moment: datetime | None) -> Any:
        """A datetime as UTCDateTime stores it (naive UTC text on SQLite)."""
        if moment is None or not self.sqlite:
            return moment
        return (
            moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        )

    def _statuses(self, subscriber_ids: list[int]) -> dict[int, str]:
        """These subscribers' statuses now, read just before their turn."""
        marks = ",".join("?" * len(subscriber_ids))
        cur = self._raw.cursor()
        cur.execute(
            # only placeholders are formatted in; the ids are bound parameters
            self._sql(f"SELECT id, status FROM subscriber WHERE id IN ({marks})"),  # noqa: S608
            subscriber_ids,
        )
        found = {row[0]: row[1] for row in cur.fetchall()}
        cur.close()
        self._raw.commit()  # end the read at once (PostgreSQL would keep a transaction open)
        return found

    def _record(self, updates: list[dict[str, Any]]) -> None:
        """Commit a group of outcomes in one transaction (each row keyed by id and our lease)."""
        if not updates:
            return
        memo: dict[datetime | None, Any] = {}

        def ts(moment: datetime | None) -> Any:  # most rows of a group share one timestamp
            if moment not in memo:
                memo[moment] = self._ts(moment)
            return memo[moment]

        rows = [
            (u["b_status"], u["b_attempts"], u["b_reply"], ts(u["b_first"]), ts(u["b_next"]),
             ts(u["b_sent"]), ts(u["b_now"]), u["b_id"], self.worker)
            for u in updates
        ]  # fmt: skip
        cur = self._raw.cursor()
        cur.executemany(self._record_sql, rows)
        cur.close()
        self._raw.commit()

    def _release(self, ids: list[int]) -> None:
        """Give claimed rows back to the queue untouched (stopping, or the server is down)."""
        if not ids:
            return
        d = self._t["delivery"]
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(d)
                .where(d.c.id.in_(ids), d.c.lease_owner == self.worker)
                .values(status=DeliveryStatus.queued.value, lease_owner=None, lease_expires_at=None)
            )

    def _renew(self, now: datetime) -> None:
        d = self._t["delivery"]
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(d)
                .where(
                    d.c.issue_id == self.issue_id,
                    d.c.lease_owner == self.worker,
                    d.c.status == DeliveryStatus.sending.value,
                )  # fmt: skip
                .values(lease_expires_at=now + self.lease)
            )

    def _outcome(self, done: _Done, now: datetime) -> dict[str, Any]:
        job, result = done.job, done.result
        assert result is not None
        attempts = job.attempts + 1
        first = job.first_attempt_at or now
        row: dict[str, Any] = {
            "b_id": job.delivery_id, "b_attempts": attempts, "b_reply": result.reply,
            "b_first": first, "b_next": None, "b_sent": None, "b_now": now,
        }  # fmt: skip
        if result.outcome == "sent":
            row["b_status"] = DeliveryStatus.sent.value
            row["b_sent"] = now
        elif result.outcome == "permanent":
            row["b_status"] = DeliveryStatus.failed.value  # 5xx: never retried for this issue
        elif now - first >= self.lifetime:
            row["b_status"] = DeliveryStatus.failed.value
            row["b_reply"] = f"gave up after {attempts} attempts: {result.reply}"[:500]
        else:
            row["b_status"] = DeliveryStatus.deferred.value
            delay = timedelta(seconds=self.retry_base * 2 ** (attempts - 1))
            row["b_next"] = now + min(delay, BACKOFF_CAP)
        return row

    def _skip(self, delivery_id: int, attempts: int, first: datetime | None, why: str,
              now: datetime) -> dict[str, Any]:  # fmt: skip
        return {
            "b_id": delivery_id, "b_status": DeliveryStatus.skipped.value, "b_attempts": attempts,
            "b_reply": why, "b_first": first, "b_next": None, "b_sent": None, "b_now": now,
        }  # fmt: skip

    # The connections ----------------------------------------------------------------------------

    def _connection(self, index: int, template: MessageTemplate,
                    jobs: queue.SimpleQueue[_Job | None], done: queue.SimpleQueue[_Done]) -> None:  # fmt: skip
        sender = self.first_sender if index == 0 and self.first_sender else None
        try:
            while True:
                job = jobs.get()
                if job is None:
                    return
                self.pacer.wait(self.stop)
                if self.stop.is_set():
                    # Stopping: a message queued but not started goes back untouched.
                    done.put(_Done(job, None, "not sent: stopping"))
                    continue
                if sender is None:
                    sender = self.sender_factory()
                try:
                    data = template.render(job.recipient)
                    result = sender.send(job.recipient.envelope_from, job.recipient.email, data)
                except SmtpUnavailable as exc:
                    done.put(_Done(job, None, exc.message))
                    continue
                except DigestError as exc:
                    done.put(_Done(job, None, exc.message, fatal=True))
                    continue
                except Exception as exc:  # never lose a job: report it as not tried
                    done.put(_Done(job, None, f"{type(exc).__name__}: {exc}"))
                    continue
                done.put(_Done(job, result))
        finally:
            if sender is not None:
                sender.close()

    # The loop -----------------------------------------------------------------------------------

    def run(self) -> SendOutcome:
        with Session(self.engine, expire_on_commit=False) as session:
            issue = session.get(Issue, self.issue_id)
            assert issue is not None
            counts = delivery_counts(session, self.issue_id)
        recipients = Recipients.of(
            self.settings, issue_uid=issue.uid, key=self.settings.secret_key_bytes(),
            issue_number=issue.number,
        )  # fmt: skip
        template = compose_issue(
            self.settings, subject=issue.subject, html=issue.html, text=issue.text
        )
        progress = SendProgress(total=sum(counts.values()))
        jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        done: queue.SimpleQueue[_Done] = queue.SimpleQueue()
        threads = [
            threading.Thread(target=self._connection, args=(i, template, jobs, done),
                             name=f"smtp-{i}", daemon=True)
            for i in range(self.connections)
        ]  # fmt: skip
        for t in threads:
            t.start()

        claimed: deque[tuple[int, int, datetime | None, _Who | None]] = deque()
        in_flight = 0
        unavailable: str | None = None
        fatal = False
        down_since: float | None = None
        self._raw = self.engine.raw_connection()
        self._qmark = self.sqlite
        self._record_sql = self._sql(
            "UPDATE delivery SET status = ?, attempts = ?, last_reply = ?, first_attempt_at = ?, "
            "next_attempt_at = ?, sent_at = ?, updated_at = ?, lease_owner = NULL, "
            "lease_expires_at = NULL WHERE id = ? AND lease_owner = ?"
        )
        with self.engine.begin() as conn:
            self._reclaim(conn, self.clock())
        self.started_at = self.clock()
        self.retry_deadline = time.monotonic() + self.retry_wait
        wait_deadline = self.retry_deadline
        last_renew = time.monotonic()
        try:
            while True:
                now = self.clock()
                records: list[dict[str, Any]] = []
                # 1. Keep every connection busy with one message and one waiting, checking each
                #    subscriber's status just before their message is handed over.
                free = 2 * self.connections - in_flight
                if not self.stop.is_set() and unavailable is None and free > 0:
                    if not claimed:
                        claimed.extend(self._claim(now))
                    chunk = [claimed.popleft() for _ in range(min(free, len(claimed)))]
                    ids = [c[3].id for c in chunk if c[3] and c[3].id]
                    status = self._statuses(ids) if ids else {}
                    for did, attempts, first, sub in chunk:
                        now_status = status.get(sub.id, "removed") if sub and sub.id else "removed"
                        if now_status != SubscriberStatus.active:
                            # Unsubscribed, bounced or erased since the issue was made: never sent.
                            records.append(
                                self._skip(did, attempts, first, f"subscriber {now_status}", now)
                            )
                            progress.count("skipped")
                            continue
                        assert sub is not None
                        recipient = recipients.subscriber(sub.uid, sub.email, sub.name)
                        jobs.put(_Job(did, attempts, first, recipient))
                        in_flight += 1
                if in_flight == 0 and not records:
                    if claimed or self.stop.is_set() or unavailable is not None:
                        break
                    if self._wait_for_others(now) or self._wait_for_retries(wait_deadline):
                        continue
                    break
                # 2. Collect what the connections finished; record it all in one commit.
                if in_flight:
                    # Wait for a few results (or 2 ms) so that one status read and one commit
                    # serve several messages; every connection still has a message queued.
                    finished = [done.get()]
                    want = max(1, in_flight // 4)
                    until = time.monotonic() + 0.002
                    while len(finished) < want:
                        left = until - time.monotonic()
                        try:
                            finished.append(
                                done.get(timeout=left) if left > 0 else done.get_nowait()
                            )
                        except queue.Empty:
                            break
                    while True:
                        try:
                            finished.append(done.get_nowait())
                        except queue.Empty:
                            break
                    in_flight -= len(finished)
                    now = self.clock()
                    released = []
                    for item in finished:
                        if item.result is None:
                            released.append(item.job.delivery_id)
                            continue
                        row = self._outcome(item, now)
                        records.append(row)
                        progress.count(row["b_status"])
                        if item.result.throttled:
                            self.pacer.throttled()
                        else:
                            self.pacer.ok()
                    if released and self.stop.is_set():
                        self._release(released)  # stopping: they wait for the next run
                    elif released:
                        # Nothing was tried: back to the queue, and pause before trying again.
                        self._release(released)
                        down_since = down_since or time.monotonic()
                        pause = self.pacer.throttled()
                        failed = [f for f in finished if f.result is None]
                        reason = failed[-1].error or "the SMTP server is unreachable"
                        if any(f.fatal for f in failed):
                            unavailable = reason
                            fatal = True
                        elif time.monotonic() - down_since > self.settings.smtp_down_seconds:
                            unavailable = reason
                        elif pause:
                            self.stop.wait(pause)
                    elif records:
                        down_since = None
                self._record(records)
                if self.on_progress and records:
                    self.on_progress(progress)
                if time.monotonic() - last_renew > self.lease.total_seconds() / 3:
                    self._renew(self.clock())
                    last_renew = time.monotonic()
        finally:
            # Anything claimed but not handed out goes back to the queue untouched.
            leftover = [c[0] for c in claimed]
            while True:
                try:
                    job = jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    leftover.append(job.delivery_id)
            for _ in threads:
                jobs.put(None)
            for t in threads:
                t.join(timeout=self.settings.smtp_timeout + 5)
            self._release(leftover)
            self._raw.close()

        with Session(self.engine, expire_on_commit=False) as session:
            issue = session.get(Issue, self.issue_id)
            assert issue is not None
            finished_issue = finish_if_done(session, issue)
            session.commit()
            counts = delivery_counts(session, self.issue_id)
        next_retry = self._next_retry_at()
        if fatal and unavailable:
            raise DigestError(
                unavailable,
                hint="Nothing more was sent; fix the setting and run `digest send` again to resume.",
            )
        return SendOutcome(
            issue.number, finished_issue, counts, self.stop.is_set(), next_retry, unavailable
        )

    def _wait_for_others(self, now: datetime) -> bool:
        """Other workers still hold rows of this issue (being sent, or locked by a claim in
        progress): wait for them to finish, or for their leases to run out (a crashed
        worker's rows are then claimed here)."""
        if self.sqlite:
            return False
        d = self._t["delivery"]
        with self.engine.connect() as conn:
            pending, expiry = conn.execute(
                sa.select(sa.func.count(), sa.func.min(d.c.lease_expires_at)).where(
                    d.c.issue_id == self.issue_id,
                    d.c.status.in_([DeliveryStatus.sending.value, DeliveryStatus.queued.value]),
                )
            ).one()
        if not pending:
            return False
        delay = 0.2
        if expiry is not None:
            if expiry.tzinfo is None:
                expiry = expiry.replace(tzinfo=UTC)
            delay = min(max((expiry - now).total_seconds(), 0.0) + 0.05, 1.0)
        self.stop.wait(delay)
        with self.engine.begin() as conn:
            self._reclaim(conn, self.clock())  # rows whose lease ran out: theirs are ours now
        return not self.stop.is_set()

    def _next_retry_at(self) -> datetime | None:
        """When the earliest deferred delivery of this issue is due (None: none deferred)."""
        d = self._t["delivery"]
        with self.engine.connect() as conn:
            next_at: datetime | None = conn.execute(
                sa.select(sa.func.min(d.c.next_attempt_at)).where(
                    d.c.issue_id == self.issue_id, d.c.status == DeliveryStatus.deferred.value
                )
            ).scalar_one()
        return self._dt(next_at)

    def _wait_for_retries(self, deadline: float) -> bool:
        """Sleep until the next deferred row is due, if that is before `deadline`."""
        next_at = self._next_retry_at()
        if next_at is None:
            return False
        delay = max((next_at - self.clock()).total_seconds(), 0.0)
        if time.monotonic() + delay > deadline:
            return False
        self.stop.wait(delay + 0.01)
        return not self.stop.is_set()
