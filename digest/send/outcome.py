"""What a send run reports: its progress while it runs, its outcome, and what that outcome
means for a person (the lines to print and the exit code)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from digest.config import Settings
from digest.errors import (
    EXIT_FAILURES,
    DigestError,
    Interrupted,
    SenderRejected,
    SmtpUnavailable,
    TemporaryFailure,
)
from digest.send.policy import Update
from digest.text import plural


@dataclass
class SendProgress:
    """Counts of addresses (not attempts) in this run."""

    total: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    deferred_ids: set[int] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)
    waiting_until: datetime | None = None  # set while the run waits to retry deferred rows

    @property
    def deferred(self) -> int:
        return len(self.deferred_ids)

    @property
    def processed(self) -> int:
        return self.sent + self.failed + self.skipped

    def count(self, update: Update) -> None:
        if update.status == "deferred":
            self.deferred_ids.add(update.delivery_id)
            return
        self.deferred_ids.discard(update.delivery_id)
        if update.status in ("sent", "failed", "skipped"):
            setattr(self, update.status, getattr(self, update.status) + 1)


@dataclass
class SendOutcome:
    issue_number: int
    finished: bool
    counts: dict[str, int]
    interrupted: bool = False
    next_retry_at: datetime | None = None
    unavailable: str | None = None  # the server stayed unreachable: the reason
    failed_addresses: list[str] = field(default_factory=list)  # failed in this run (the first few)
    failed_count: int = 0  # addresses that failed in this run


class DeliveriesFailed(DigestError):
    """The issue went out, but some addresses refused it for good (5xx)."""

    exit_code = EXIT_FAILURES


@dataclass(frozen=True)
class OutcomeReport:
    """What a send's outcome means for a person: lines to print, and the error (with its exit
    code) to end on, if any."""

    lines: list[str]
    warnings: list[str]
    error: DigestError | None


def outcome_report(outcome: SendOutcome, settings: Settings) -> OutcomeReport:
    c = outcome.counts
    n = outcome.issue_number
    lines = [
        f"Issue {n}: {c['sent']} sent, {c['failed']} failed, {c['deferred']} deferred, "
        f"{c['skipped']} skipped, {c['queued'] + c['sending']} not yet tried."
    ]
    warnings: list[str] = []
    if outcome.failed_count:
        shown = ", ".join(outcome.failed_addresses)
        more = outcome.failed_count - len(outcome.failed_addresses)
        rest = f" and {more} more" if more > 0 else ""
        warnings.append(
            f"{plural(outcome.failed_count, 'address', 'addresses')} refused it for good: "
            f"{shown}{rest}; `digest issues show {n}` has the replies."
        )
    error: DigestError | None = None
    if outcome.interrupted:
        error = Interrupted(
            "stopped before the issue was complete", hint="Run `digest send` again to resume it."
        )
    elif outcome.unavailable:
        error = SmtpUnavailable(
            f"stopped: {outcome.unavailable}",
            hint="The rest stays queued; run `digest send` again when the server is back.",
        )
    elif not outcome.finished and outcome.next_retry_at is not None:
        when = outcome.next_retry_at.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")
        them = "it" if c["deferred"] == 1 else "them"
        error = TemporaryFailure(
            f"{plural(c['deferred'], 'delivery', 'deliveries')} failed temporarily; "
            f"run `digest send` again after {when} to retry {them}"
        )
    elif not outcome.finished:
        # nothing deferred: the rest is with other workers, which finish the issue
        lines.append(f"Issue {n}: the remaining deliveries are with other workers.")
    else:
        lines.append(f"Issue {n} is complete.")
    if error is None and outcome.failed_count:
        error = DeliveriesFailed(
            f"issue {n} went out, but {plural(outcome.failed_count, 'address', 'addresses')} "
            "failed permanently",
            hint=f"`digest issues show {n}` lists them with the server's replies.",
        )
    return OutcomeReport(lines, warnings, error)


def halt_error(kind: str, why: str, hint: str | None, issue_number: int) -> DigestError:
    """The error of a run that stopped itself: the relay refused the sender or the message
    ("sender"), a setting is wrong ("setup"), or a bug ("error")."""
    if kind == "sender":
        return SenderRejected(
            f"stopped: the relay refused the sender or the message: {why}; "
            f"issue {issue_number} is not complete",
            hint=hint,
        )
    return DigestError(
        why if kind == "setup" else f"stopped: {why}",
        hint=hint
        or "Nothing more was sent; fix the setting and run `digest send` again to resume.",
    )
