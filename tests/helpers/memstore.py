"""An in-memory `digest.send.store.Store`: the send loop driven without a database (issue #9:
"a test can drive the policy without a database and the loop without SMTP"), and scripted
senders for it. The real store is digest.send.store.SqlStore; this one keeps the same rules
(a sent outcome is recorded whoever holds the row; any other only while the row is leased)
so that a test of the loop can look at every row and every call."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from digest.models import DeliveryStatus, Issue, IssueStatus, utcnow
from digest.send.mailer import SendResult
from digest.send.policy import Update
from digest.send.smtp_wire import Then
from digest.send.store import Claimed, Who

TERMINAL = {"sent", "failed", "skipped"}


@dataclass
class Row:
    id: int
    who: Who | None
    status: str = "queued"
    attempts: int = 0
    reply: str = ""
    first_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = None
    sent_at: datetime | None = None
    updated_at: datetime = field(default_factory=utcnow)
    leased: bool = False
    history: list[str] = field(default_factory=list)  # every status it was recorded with


class MemoryStore:
    """One issue's deliveries in a dict; thread-safe like the real store."""

    def __init__(self, emails: Sequence[str], clock: Callable[[], datetime] = utcnow) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.rows = {
            i + 1: Row(i + 1, Who(i + 1, f"{i + 1:032x}", email, ""))
            for i, email in enumerate(emails)
        }
        self.subscriber_status = {i + 1: "active" for i in range(len(emails))}
        self.issue = Issue(id=1, number=1, uid="0" * 32, subject="Test issue", html="", text="")
        self.calls: list[str] = []
        self.renewals = 0
        self.checks = 0  # rows checked before MAIL FROM

    def by_email(self, email: str) -> Row:
        return next(r for r in self.rows.values() if r.who is not None and r.who.email == email)

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in DeliveryStatus}
        for row in self.rows.values():
            out[row.status] += 1
        return out

    # The Store ----------------------------------------------------------------------------

    def start(self) -> None:
        with self.lock:
            self.calls.append("start")
            for row in self.rows.values():
                if row.status == "sending":
                    row.status, row.leased = "queued", False

    def claim(self, limit: int, *, deferred_before: datetime | None) -> list[Claimed]:
        now = self.clock()
        with self.lock:
            self.calls.append("claim")
            due = [
                r
                for r in self.rows.values()
                if r.status in ("queued", "deferred")
                and (r.next_attempt_at is None or r.next_attempt_at <= now)
                and (
                    deferred_before is None
                    or r.status == "queued"
                    or r.updated_at < deferred_before
                )
            ][:limit]
            for r in due:
                r.status, r.leased, r.updated_at = "sending", True, now
            return [Claimed(r.id, r.attempts, r.first_attempt_at, r.who) for r in due]

    def record(self, updates: Sequence[Update]) -> None:
        with self.lock:
            self.calls.append(f"record {len(updates)}")
            for u in updates:
                row = self.rows[u.delivery_id]
                if u.status == "sent" and row.status == "sent":
                    continue
                if u.status != "sent" and not (row.status == "sending" and row.leased):
                    continue
                row.status, row.attempts, row.reply = u.status, u.attempts, u.reply
                row.first_attempt_at, row.next_attempt_at = u.first_attempt_at, u.next_attempt_at
                row.sent_at, row.updated_at, row.leased = u.sent_at, self.clock(), False
                row.history.append(u.status)

    def release(self, delivery_ids: Sequence[int]) -> None:
        with self.lock:
            if delivery_ids:
                self.calls.append(f"release {len(delivery_ids)}")
            for i in delivery_ids:
                row = self.rows[i]
                if row.status == "sending" and row.leased:
                    row.status, row.leased = "queued", False

    def renew(self) -> None:
        with self.lock:
            self.renewals += 1

    def check(self, delivery_ids: Sequence[int]) -> dict[int, str]:
        with self.lock:
            self.checks += len(delivery_ids)
            found = {}
            for i in delivery_ids:
                row = self.rows[i]
                if row.status == "sending" and row.leased:
                    who = row.who
                    found[i] = self.subscriber_status.get(who.id, "removed") if who else "removed"
            return found

    def others_pending(self) -> tuple[int, float | None]:
        return 0, None

    def reclaim_expired(self) -> None:
        pass

    def retries(self) -> tuple[datetime | None, int]:
        with self.lock:
            deferred = [r for r in self.rows.values() if r.status == "deferred"]
            times = [r.next_attempt_at for r in deferred if r.next_attempt_at is not None]
            return (min(times) if times else None), len(deferred)

    def failed_addresses(self, since: datetime, limit: int) -> list[str]:
        with self.lock:
            return [
                r.who.email
                for r in self.rows.values()
                if r.status == "failed" and r.who is not None and r.updated_at >= since
            ][:limit]

    def finish(self) -> tuple[Issue, bool, dict[str, int]]:
        counts = self.counts()
        done = all(r.status in TERMINAL for r in self.rows.values())
        if done and self.issue.status == IssueStatus.sending:
            self.issue.status = (
                IssueStatus.sent_with_failures if counts["failed"] else IssueStatus.sent
            )
        return self.issue, done, counts

    def close(self) -> None:
        self.calls.append("close")


Reply = Callable[[str, int], SendResult]  # (recipient, attempt number 1…) -> the result


class ScriptedSender:
    """A Sender without SMTP: answers each recipient as `reply` says, and counts attempts."""

    def __init__(self, reply: Reply, log: list[tuple[str, str]], lock: threading.Lock) -> None:
        self.reply = reply
        self.log = log  # (recipient, outcome) of every attempt, shared by every connection
        self.lock = lock
        self.closed = False

    async def send(
        self, envelope_from: str, recipient: str, message: bytes, then: Then | None = None
    ) -> SendResult:
        assert b"\r\n\r\n" in message and recipient.encode() in message  # a real message
        with self.lock:
            attempt = 1 + sum(1 for r, _ in self.log if r == recipient)
            result = self.reply(recipient, attempt)
            self.log.append((recipient, result.outcome))
        return result

    async def close(self) -> None:
        self.closed = True


OK = SendResult("sent", 250, "250 2.0.0 OK")
LATER = SendResult("temporary", 451, "451 4.7.1 Greylisted, try again later")
UNKNOWN = SendResult("permanent", 550, "550 5.1.1 User unknown")
