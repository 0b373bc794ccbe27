"""Every SQL statement of the send loop, behind the small `Store` interface the loop uses.

Leases are written and compared with the database's clock on PostgreSQL (workers on several
machines do not share a clock); on SQLite the send lock makes this process the only sender,
and its own clock is the database's. The hot path (claims, status reads, a group of outcomes)
goes through one DB-API connection with plain SQL: building SQLAlchemy statements there cost
more than the database. The send runs on one thread (digest.send.run), so one connection
serves it all, `check` right before MAIL FROM included.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy.engine import Engine
from sqlmodel import Session

from digest.issues.state import delivery_counts, finish_if_done
from digest.models import Issue, from_db_time, to_db_time, utcnow
from digest.send.policy import Update

log = logging.getLogger("digest.send")


class Who(NamedTuple):
    id: int
    uid: str
    email: str
    name: str


@dataclass(frozen=True, slots=True)
class Claimed:
    delivery_id: int
    attempts: int
    first_attempt_at: datetime | None
    subscriber: Who | None  # None: erased since the issue was made
    variant_id: int | None = None  # the part of the issue they get (None: the whole issue)


class Store(Protocol):
    """What the send loop needs from the database, for one issue and one worker."""

    def start(self) -> None:
        """Take back rows a dead worker left `sending`."""

    def claim(self, limit: int, *, deferred_before: datetime | None) -> list[Claimed]:
        """Lease up to `limit` due rows. `deferred_before`: rows deferred at or after this
        time are not due again in this run."""

    def record(self, updates: Sequence[Update]) -> None:
        """Commit a group of outcomes."""

    def release(self, delivery_ids: Sequence[int]) -> None:
        """Give leased rows back to the queue untouched."""

    def renew(self) -> None:
        """Extend the lease of every row this worker holds."""

    def check(self, delivery_ids: Sequence[int]) -> dict[int, str]:
        """Right before MAIL FROM: of these rows, those still leased to this worker and not
        cancelled (their leases extended), each with its subscriber's status now ('removed'
        when erased)."""

    def others_pending(self) -> tuple[int, float | None]:
        """Rows other workers hold or may claim, and seconds until the first lease runs out."""

    def reclaim_expired(self) -> None:
        """Rows whose lease ran out (their worker died) go back to the queue."""

    def retries(self) -> tuple[datetime | None, int]:
        """When the earliest deferred row is due (None: none is), and how many are deferred."""

    def failed_addresses(self, since: datetime, limit: int) -> list[str]:
        """Addresses recorded `failed` since `since` (this run)."""

    def finish(self) -> tuple[Issue, bool, dict[str, int]]:
        """The issue, whether it is complete now (every row terminal), and its counts."""

    def close(self) -> None: ...


class SqlStore:
    """The Store on SQLite or PostgreSQL."""

    def __init__(
        self,
        engine: Engine,
        issue_id: int,
        *,
        worker: str,
        lease_seconds: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.issue_id = issue_id
        self.worker = worker
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.sqlite = engine.dialect.name == "sqlite"
        self._pooled: Any = engine.raw_connection()
        # The DB-API connection itself: going through the pool's proxy for every cursor and
        # commit cost more than some of the statements.
        self._raw: Any = self._pooled.driver_connection
        # SQLite: the rows leased here, with their subscribers' statuses, as of _version
        self._known: dict[int, str] = {}
        self._version: int | None = None
        if self.sqlite:
            self._lease_until = "?"  # our clock, bound per statement
            self._now = "?"
        else:
            self._lease_until = "clock_timestamp() + make_interval(secs => %s)"
            self._now = "clock_timestamp()"

    # Helpers ----------------------------------------------------------------------------------

    def _sql(self, text: str) -> str:
        return text if self.sqlite else text.replace("?", "%s")

    def _ts(self, moment: datetime | None) -> Any:
        return to_db_time(moment, sqlite=self.sqlite)

    def _lease_arg(self) -> list[Any]:
        """The bound value of a lease expiry: a time on SQLite, seconds on PostgreSQL."""
        if self.sqlite:
            from datetime import timedelta

            return [self._ts(self.clock() + timedelta(seconds=self.lease_seconds))]
        return [self.lease_seconds]

    def _now_arg(self) -> list[Any]:
        return [self._ts(self.clock())] if self.sqlite else []

    def _run(self, sql: str, args: Sequence[Any] = (), *, many: bool = False) -> int:
        cur = self._raw.cursor()
        try:
            if many:
                cur.executemany(self._sql(sql), args)
            else:
                cur.execute(self._sql(sql), list(args))
            n = cur.rowcount
        finally:
            cur.close()
        self._raw.commit()
        return int(n if n is not None else 0)

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        cur = self._raw.cursor()
        try:
            cur.execute(self._sql(sql), list(args))
            rows = cur.fetchall()
        finally:
            cur.close()
        self._raw.commit()  # end the read at once (PostgreSQL would keep a transaction open)
        return list(rows)

    def _data_version(self, cur: Any) -> int | None:
        """SQLite's count of commits by other connections (None on PostgreSQL)."""
        if not self.sqlite:
            return None
        cur.execute("PRAGMA data_version")
        return int(cur.fetchone()[0])

    def _remember(self, version: int | None, statuses: dict[int, str]) -> None:
        """Rows leased to this worker and their subscribers' statuses, as read when
        `version` was current; a new version forgets the rest (they are read again when
        they are asked about)."""
        if version != self._version:
            self._known = {}
            self._version = version
        self._known.update(statuses)

    # The Store --------------------------------------------------------------------------------

    def start(self) -> None:
        if self.sqlite:
            # We hold the send lock, so every `sending` row not ours was left by a dead sender.
            self._run(
                "UPDATE delivery SET status = 'queued', lease_owner = NULL, "
                "lease_expires_at = NULL WHERE issue_id = ? AND status = 'sending' "
                "AND (lease_owner IS NULL OR lease_owner <> ?)",
                [self.issue_id, self.worker],
            )
        else:
            self.reclaim_expired()

    def reclaim_expired(self) -> None:
        if self.sqlite:
            return
        self._run(
            "UPDATE delivery SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL "
            "WHERE issue_id = ? AND status = 'sending' AND lease_expires_at < clock_timestamp()",
            [self.issue_id],
        )

    def claim(self, limit: int, *, deferred_before: datetime | None) -> list[Claimed]:
        args: list[Any] = [self.issue_id, self._ts(self.clock())]
        where = (
            "issue_id = ? AND status IN ('queued', 'deferred') "
            "AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
        )
        if deferred_before is not None:
            where += " AND (status = 'queued' OR updated_at < ?)"
            args.append(self._ts(deferred_before))
        # No ORDER BY: sorting the whole queue for every claim would be O(n). Fixed text and
        # placeholders only; every value is a bound parameter.
        select_due = f"SELECT id FROM delivery WHERE {where} LIMIT {int(limit)}"  # noqa: S608
        if not self.sqlite:
            select_due += " FOR UPDATE SKIP LOCKED"
        cur = self._raw.cursor()
        try:
            version = self._data_version(cur)
            cur.execute(self._sql(select_due), args)
            ids = [row[0] for row in cur.fetchall()]
            if not ids:
                self._raw.commit()
                return []
            marks = ",".join("?" * len(ids))
            cur.execute(
                self._sql(
                    "UPDATE delivery SET status = 'sending', lease_owner = ?, "  # noqa: S608
                    f"lease_expires_at = {self._lease_until}, updated_at = ? WHERE id IN ({marks})"
                ),
                [self.worker, *self._lease_arg(), self._ts(self.clock()), *ids],
            )
            self._raw.commit()
            cur.execute(
                self._sql(
                    "SELECT d.id, d.attempts, d.first_attempt_at, s.id, s.uid, s.email, s.name, "  # noqa: S608
                    "d.variant_id, s.status "
                    "FROM delivery d LEFT JOIN subscriber s ON s.id = d.subscriber_id "
                    f"WHERE d.id IN ({marks}) ORDER BY d.id"
                ),
                ids,
            )
            rows = cur.fetchall()
            self._raw.commit()
        finally:
            cur.close()
        if self.sqlite:
            self._remember(version, {row[0]: row[8] or "removed" for row in rows})
        # Plain tuples: building a model object per row cost more than the whole claim.
        return [
            Claimed(
                did,
                attempts,
                from_db_time(first),
                Who(sid, uid, email, name) if sid else None,
                variant,
            )  # fmt: skip
            for did, attempts, first, sid, uid, email, name, variant, _ in rows
        ]

    def record(self, updates: Sequence[Update]) -> None:
        """`sent` is recorded whoever holds the row now (it was sent: that is the truth), unless
        someone recorded it sent already; any other outcome while the row is ours or back in
        the queue (a row now held by another worker is theirs to decide). An outcome that
        cannot be recorded is logged, never dropped silently."""
        if not updates:
            return
        for u in updates:  # no longer in flight: nothing to check before MAIL FROM
            self._known.pop(u.delivery_id, None)
        memo: dict[datetime | None, Any] = {}

        def ts(moment: datetime | None) -> Any:  # most rows of a group share one timestamp
            if moment not in memo:
                memo[moment] = self._ts(moment)
            return memo[moment]

        now = ts(self.clock())
        sent = [u for u in updates if u.status == "sent"]
        other = [u for u in updates if u.status != "sent"]
        head = (
            "UPDATE delivery SET status = ?, attempts = ?, last_reply = ?, first_attempt_at = ?, "
            "next_attempt_at = ?, sent_at = ?, updated_at = ?, lease_owner = NULL, "
            "lease_expires_at = NULL WHERE id = ? AND "
        )
        lost = 0
        for group, guard, extra in (
            (sent, "status <> 'sent'", ()),
            # ours, or back in the queue (a lease that ran out and was not taken again); never
            # over a row sent, cancelled or now held by another worker
            (
                other,
                "status IN ('sending', 'queued', 'deferred') "
                "AND (lease_owner = ? OR lease_owner IS NULL)",
                (self.worker,),
            ),
        ):
            if not group:
                continue
            rows = [
                (u.status, u.attempts, u.reply, ts(u.first_attempt_at), ts(u.next_attempt_at),
                 ts(u.sent_at), now, u.delivery_id, *extra)
                for u in group
            ]  # fmt: skip
            n = self._run(head + guard, rows, many=True)
            if n != len(group):
                lost += len(group) - n
                self._log_lost(group)
        if lost:
            log.warning("%d outcome(s) of issue %d were for rows no longer leased to this "
                        "worker", lost, self.issue_id)  # fmt: skip

    def _log_lost(self, group: Sequence[Update]) -> None:
        marks = ",".join("?" * len(group))
        now = {
            row[0]: (row[1], row[2])
            for row in self._rows(
                f"SELECT id, status, lease_owner FROM delivery WHERE id IN ({marks})",  # noqa: S608
                [u.delivery_id for u in group],
            )
        }
        for u in group:
            status, owner = now.get(u.delivery_id, ("gone", None))
            if u.status == "sent" and status == "sent":
                log.warning("delivery %d was sent again: another worker had sent it already "
                            "(same Message-ID)", u.delivery_id)  # fmt: skip
            elif u.status != "sent" and status not in ("sending", "queued", "deferred"):
                log.warning("delivery %d: outcome %s not recorded; the row is now %s",
                            u.delivery_id, u.status, status)  # fmt: skip
            elif u.status != "sent" and owner not in (None, self.worker):
                log.warning("delivery %d: outcome %s not recorded; the row is now %s (%s)",
                            u.delivery_id, u.status, status, owner or "no lease")  # fmt: skip

    def release(self, delivery_ids: Sequence[int]) -> None:
        if not delivery_ids:
            return
        for i in delivery_ids:
            self._known.pop(i, None)
        marks = ",".join("?" * len(delivery_ids))
        self._run(
            "UPDATE delivery SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL "  # noqa: S608
            f"WHERE id IN ({marks}) AND lease_owner = ? AND status = 'sending'",
            [*delivery_ids, self.worker],
        )

    def renew(self) -> None:
        self._run(
            f"UPDATE delivery SET lease_expires_at = {self._lease_until} "  # noqa: S608
            "WHERE issue_id = ? AND lease_owner = ? AND status = 'sending'",
            [*self._lease_arg(), self.issue_id, self.worker],
        )

    def check(self, delivery_ids: Sequence[int]) -> dict[int, str]:
        if not delivery_ids:
            return {}
        marks = ",".join("?" * len(delivery_ids))
        if self.sqlite:
            # The send lock keeps other senders out: only another connection's commit (a
            # cancel, an unsubscribe, a bounce) can change what this one read. SQLite counts
            # those commits (PRAGMA data_version); while there were none, what this
            # connection knows is still true and costs no query.
            cur = self._raw.cursor()
            try:
                version = self._data_version(cur)
            finally:
                cur.close()
            known = self._known
            if version == self._version and all(i in known for i in delivery_ids):
                return {i: known[i] for i in delivery_ids}
            found = self._rows(
                "SELECT d.id, coalesce(s.status, 'removed') FROM delivery d "  # noqa: S608
                "LEFT JOIN subscriber s ON s.id = d.subscriber_id "
                f"WHERE d.id IN ({marks}) AND d.lease_owner = ? AND d.status = 'sending'",
                [*delivery_ids, self.worker],
            )
            statuses = {row[0]: row[1] for row in found}
            self._remember(version, statuses)
            return statuses
        else:
            found = self._rows(
                f"WITH ours AS (UPDATE delivery SET lease_expires_at = {self._lease_until} "  # noqa: S608
                f"WHERE id IN ({marks}) AND lease_owner = ? AND status = 'sending' "
                "RETURNING id, subscriber_id) "
                "SELECT ours.id, coalesce(s.status, 'removed') FROM ours "
                "LEFT JOIN subscriber s ON s.id = ours.subscriber_id",
                [self.lease_seconds, *delivery_ids, self.worker],
            )
        return {row[0]: row[1] for row in found}

    def others_pending(self) -> tuple[int, float | None]:
        if self.sqlite:
            return 0, None
        ((pending, seconds),) = self._rows(
            "SELECT count(*), EXTRACT(EPOCH FROM min(lease_expires_at) - clock_timestamp()) "
            "FROM delivery WHERE issue_id = ? AND status IN ('sending', 'queued')",
            [self.issue_id],
        )
        return int(pending), None if seconds is None else float(seconds)

    def retries(self) -> tuple[datetime | None, int]:
        ((next_at, n),) = self._rows(
            "SELECT min(next_attempt_at), count(*) FROM delivery "
            "WHERE issue_id = ? AND status = 'deferred'",
            [self.issue_id],
        )
        return from_db_time(next_at), int(n)

    def failed_addresses(self, since: datetime, limit: int) -> list[str]:
        found = self._rows(
            "SELECT s.email FROM delivery d JOIN subscriber s ON s.id = d.subscriber_id "  # noqa: S608
            f"WHERE d.issue_id = ? AND d.status = 'failed' AND d.updated_at >= ? "
            f"ORDER BY d.id LIMIT {int(limit)}",
            [self.issue_id, self._ts(since)],
        )
        return [row[0] for row in found]

    def finish(self) -> tuple[Issue, bool, dict[str, int]]:
        with Session(self.engine, expire_on_commit=False) as session:
            issue = session.get(Issue, self.issue_id)
            assert issue is not None
            done = finish_if_done(session, issue)
            session.commit()
            return issue, done, delivery_counts(session, self.issue_id)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a connection that is already broken
            self._pooled.close()
