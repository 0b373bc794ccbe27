"""The send policy, pure (no database, no SMTP): what a reply means for a delivery.

`RetryPolicy.update` turns one SMTP result into the delivery's next state: sent, failed for
good (5xx, or temporary failures past `retry_lifetime_hours`), or deferred with a back-off
that doubles from `retry_base_seconds` up to an hour. `CircuitBreaker` notices a relay that
refuses everyone, so such replies stop the run instead of failing the whole list.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from digest.send.mailer import SendResult

if TYPE_CHECKING:
    from digest.config import Settings
    from digest.send.pacing import Pacer

BACKOFF_CAP = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Update:
    """A delivery's new state, to be recorded."""

    delivery_id: int
    status: str  # sent | deferred | failed | skipped
    attempts: int
    reply: str
    first_attempt_at: datetime | None
    next_attempt_at: datetime | None = None
    sent_at: datetime | None = None


@dataclass(frozen=True)
class RetryPolicy:
    lifetime: timedelta
    base_seconds: float

    def update(
        self,
        delivery_id: int,
        attempts: int,
        first_attempt_at: datetime | None,
        result: SendResult,
        now: datetime,
    ) -> Update:
        attempts += 1
        first = first_attempt_at or now
        if result.outcome == "sent":
            return Update(delivery_id, "sent", attempts, result.reply, first, sent_at=now)
        if result.outcome == "permanent":  # 5xx: never retried for this issue
            return Update(delivery_id, "failed", attempts, result.reply, first)
        if now - first >= self.lifetime:
            reply = f"gave up after {attempts} attempts: {result.reply}"[:500]
            return Update(delivery_id, "failed", attempts, reply, first)
        delay = min(timedelta(seconds=self.base_seconds * 2 ** (attempts - 1)), BACKOFF_CAP)
        return Update(delivery_id, "deferred", attempts, result.reply, first, now + delay)


def skip(delivery_id: int, attempts: int, first_attempt_at: datetime | None, why: str) -> Update:
    """Never sent: the subscriber left (or was erased) since the issue was made."""
    return Update(delivery_id, "skipped", attempts, why, first_attempt_at)


class CircuitBreaker:
    """Trips after `limit` permanent failures in a row (0: never).

    The failures of the current streak are held back (`held`), not recorded: if the breaker
    trips they were most likely about the sender, so they go back to the queue; a success
    ends the streak and they are recorded as the failures they were.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held: list[Update] = []
        self.last_reply = ""

    def permanent(self, update: Update) -> list[Update]:
        """A permanent failure: what to record now (nothing while the streak is held)."""
        if not self.limit:
            return [update]
        self.held.append(update)
        self.last_reply = update.reply
        return []

    def success(self) -> list[Update]:
        """Anything else ends the streak: record what was held."""
        held, self.held = self.held, []
        return held

    @property
    def tripped(self) -> bool:
        return bool(self.limit) and len(self.held) >= self.limit


MAX_SIGNING_PROCESSES = 4


def signing_helpers(setting: int | None, connections: int) -> int:
    """How many DKIM helper processes a run starts: the setting, or (unset) one for each core,
    at most 4, and none for a single connection (which sends one message at a time, so a
    signature made elsewhere would only be waited for) or on a single core."""
    if setting is not None:
        return setting
    if connections < 2:
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    return 0 if cores < 2 else min(MAX_SIGNING_PROCESSES, cores)


@dataclass(frozen=True)
class RunOptions:
    connections: int = 1
    lease_seconds: float = 60.0
    retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(timedelta(hours=72), base_seconds=60.0)
    )
    retry_wait_seconds: float = 300.0
    smtp_down_seconds: float = 300.0
    max_consecutive_failures: int = 20
    batch_size: int = 16
    signing_processes: int = 0  # DKIM helper processes (digest.send.signers)

    @classmethod
    def of(cls, settings: Settings, pacer: Pacer, retry_wait: float | None = None) -> RunOptions:
        connections = settings.smtp_connections
        batch = max(connections, min(512, 16 * connections))
        if pacer.base:  # a slow, paced run claims only what it sends within a third of a lease
            batch = max(1, min(batch, int(settings.lease_seconds / 3 / pacer.base)))
        return cls(
            connections=connections, lease_seconds=settings.lease_seconds,
            retry=RetryPolicy(timedelta(hours=settings.retry_lifetime_hours),
                              settings.retry_base_seconds),
            retry_wait_seconds=settings.retry_wait_seconds if retry_wait is None else retry_wait,
            smtp_down_seconds=settings.smtp_down_seconds,
            max_consecutive_failures=settings.max_consecutive_failures, batch_size=batch,
            signing_processes=signing_helpers(settings.dkim_signing_processes, connections),
        )  # fmt: skip
