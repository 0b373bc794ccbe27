"""Sending confirmation emails (double opt-in): composed like a digest, paced by the same pacer.

The web endpoint sends one after its response; `subscribers import --send-confirmation` sends
many. Either way each goes through `compose.confirmation` (DKIM-signed when configured) and
waits its turn in `Pacer` (send_rate, send_rate_per_hour, and slowing down when the server
asks), so a burst of sign-ups cannot exceed what the relay was promised.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from digest.compose.confirmation import confirmation_message
from digest.compose.recipients import Recipients, configured_signer
from digest.config import Settings
from digest.db import Engine, session_scope
from digest.errors import DigestError
from digest.lifecycle import (
    ConfirmationJob,
    confirm_url,
    import_pending,
    mark_confirmation_not_sent,
    require_base_url,
)
from digest.models import utcnow
from digest.send.mailer import Sender, SendResult, SmtpSender
from digest.send.pacing import Pacer
from digest.subscribers import ImportReport


def send_confirmations(
    engine: Engine,
    settings: Settings,
    jobs: Sequence[ConfirmationJob],
    sender: Sender,
    *,
    now: datetime | None = None,
    pacer: Pacer | None = None,
    stop: threading.Event | None = None,
) -> list[tuple[ConfirmationJob, SendResult]]:
    """Send each job's email. One that was not accepted has its log entry changed to
    CONFIRMATION_NOT_SENT, so it does not count against the cooldown and can be asked again."""
    now = now or utcnow()
    key = settings.secret_key_bytes()
    signer = configured_signer(settings)
    recipients = Recipients.of(settings)
    pacer = pacer or Pacer(settings.send_rate, settings.send_rate_per_hour)
    stop = stop or threading.Event()
    results = []
    for job in jobs:
        pacer.wait(stop)
        recipient = recipients.confirmation(job.email, job.name)
        url = confirm_url(settings, key, job.subscriber_uid, now)
        data = confirmation_message(settings, recipient, url=url, now=now, signer=signer)
        try:
            result = sender.send(recipient.envelope_from, job.email, data)
        except DigestError as exc:  # could not connect: nothing was sent
            result = SendResult("temporary", 0, exc.message[:500])
        if result.throttled:
            pacer.throttled()
        else:
            pacer.ok()
        if result.outcome != "sent":
            with session_scope(engine) as session:
                mark_confirmation_not_sent(session, job.event_id, result.reply)
        results.append((job, result))
    return results


@dataclass(frozen=True)
class ConfirmedImport:
    report: ImportReport
    results: list[tuple[ConfirmationJob, SendResult]]  # one per confirmation email

    @property
    def not_sent(self) -> list[tuple[str, str]]:
        """(address, the server's reply) of each confirmation email that did not go out."""
        return [(job.email, r.reply) for job, r in self.results if r.outcome != "sent"]


def import_and_confirm(
    engine: Engine, settings: Settings, path: Path, *, reactivate: bool = False
) -> ConfirmedImport:
    """`subscribers import --status pending --send-confirmation`: import the list as pending
    (committed first), then email each new subscriber a link to confirm.

    Running it again sends only the confirmations that did not go out (see import_pending).
    """
    require_base_url(settings)
    settings.secret_key_bytes()  # before anything is imported
    with session_scope(engine) as session:
        report, jobs = import_pending(
            session, path, keyring=settings.keyring(), reactivate=reactivate,
            allow_special_use=settings.allow_special_use_domains, settings=settings,
        )  # fmt: skip
    sender = SmtpSender(settings.smtp)
    try:
        return ConfirmedImport(report, send_confirmations(engine, settings, jobs, sender))
    finally:
        sender.close()
