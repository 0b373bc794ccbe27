"""The whole of `digest send`: plan, confirm, freeze, deliver."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from digest.compose.recipients import Recipients, compose_issue
from digest.compose.wire import MessageTemplate
from digest.config import Settings
from digest.db import Engine, session_scope
from digest.errors import (
    DigestError,
    Interrupted,
    SmtpUnavailable,
    UsageError,
)
from digest.issues.freeze import IssueRace
from digest.issues.review import ensure_sendable
from digest.issues.select import NextIssue
from digest.issues.state import delivery_counts, retrying_issues
from digest.issues.variants import variant_rows
from digest.models import Issue, IssueStatus, utcnow
from digest.send.lock import send_lock
from digest.send.mailer import SmtpSender
from digest.send.outcome import SendOutcome, SendProgress, outcome_report
from digest.send.pacing import Pacer
from digest.send.plan import (
    ScheduledPlan,
    SendPlan,
    join_plan,
    plan_scheduled,
    plan_send,
    start_issue,
)
from digest.send.policy import RunOptions
from digest.send.review import after_review_step
from digest.send.run import DeliveryRun
from digest.send.smtp import SmtpConnection
from digest.send.store import SqlStore
from digest.text import plural


def send_next(
    engine: Engine,
    settings: Settings,
    *,
    scheduled: bool = False,
    worker: bool = False,
    force: bool = False,
    notify: Callable[[str], None],
    confirm: Callable[[SendPlan], None] | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[int, int], Callable[[SendProgress], None] | None] | None = None,
    now: datetime | None = None,
    shape: NextIssue | None = None,
    acted: Callable[[], None] | None = None,
) -> SendOutcome | None:
    """The whole of `digest send`: decide what to send, freeze it, deliver it.

    `acted` is called when a run that sends no issue still did something to report (sent
    a review copy, or found a draft stale), so `--quiet` shows what it said.

    Returns None when there is nothing to do. Nothing is frozen before the SMTP server has
    answered, so a send that cannot connect leaves no half-made issue behind. `scheduled`
    with several `frequencies`: each one's issue in turn (daily, weekly: each its own period);
    one that does not complete stops the run, the next run goes on from there.
    """
    now = now or utcnow()
    stop = stop or threading.Event()
    offered = settings.offered_frequencies
    if not scheduled or worker or len(offered) == 1:
        return _send_one(engine, settings, scheduled=scheduled, worker=worker, force=force,
                         notify=notify, confirm=confirm, stop=stop, progress=progress, now=now,
                         shape=shape, frequency=offered[0] if scheduled else None,
                         acted=acted)  # fmt: skip
    outcomes: list[SendOutcome] = []
    for frequency in offered:
        if outcomes and not _complete(outcomes[-1]):
            break  # the next scheduled run goes on from here
        found = _send_one(engine, settings, scheduled=True, worker=False, force=force,
                          notify=notify, confirm=confirm, stop=stop, progress=progress,
                          now=now, shape=shape, frequency=frequency, acted=acted)  # fmt: skip
        if found is not None:
            if outcomes:  # the caller reports the last one; say how the one before went
                for line in outcome_report(outcomes[-1], settings).lines:
                    notify(line)
            outcomes.append(found)
        if stop.is_set():
            break
    return outcomes[-1] if outcomes else None


def _complete(outcome: SendOutcome) -> bool:
    return outcome.finished and not outcome.interrupted and not outcome.unavailable


def _send_one(
    engine: Engine,
    settings: Settings,
    *,
    scheduled: bool,
    worker: bool,
    force: bool,
    notify: Callable[[str], None],
    confirm: Callable[[SendPlan], None] | None,
    stop: threading.Event,
    progress: Callable[[int, int], Callable[[SendProgress], None] | None] | None,
    now: datetime,
    shape: NextIssue | None,
    frequency: str | None,
    acted: Callable[[], None] | None,
) -> SendOutcome | None:
    """One issue: the unfinished one, the next one, or (`scheduled`) this period's issue of
    `frequency`."""
    with send_lock(settings.database_url):
        key: str | None = None
        decision: ScheduledPlan | None = None
        with session_scope(engine) as session:
            if worker:
                plan = join_plan(session)
                if plan is None:
                    notify("No issue is being sent; nothing for a worker to do.")
                    return None
            elif scheduled:
                decision = plan_scheduled(
                    session, settings, now=now, force=force, frequency=frequency
                )
                notify(decision.message)
                plan, key = decision.plan, decision.key
            else:
                plan = plan_send(session, settings, shape)
                if plan is None:
                    notify("No new items since the last issue; nothing to send.")
            retrying = [] if worker else [i.number for i in retrying_issues(session, now)]
        if decision is not None and (decision.review or decision.error):
            if acted is not None:
                acted()
            after_review_step(engine, settings, decision, notify=notify, now=now)
        if plan is None:
            if not retrying:
                return None
            first = _connect(settings, stop)
            try:
                return retry_older(engine, settings, exclude=None, stop=stop, notify=notify,
                                   now=now, first=first, progress=progress)  # fmt: skip
            finally:
                first.close()
        if plan.resume is not None:
            ensure_sendable(plan.resume)  # a draft waits for `digest issues approve`
            if plan.resume.status == IssueStatus.approved:
                notify(f"Issue {plan.resume.number}: {plan.resume.subject} (approved by "
                       f"{plan.resume.approved_by}) to {plural(plan.recipients, 'subscriber')}.")  # fmt: skip
                if plan.recipients == 0:
                    raise UsageError("there are no active subscribers",
                                     hint="Add some with `digest subscribers add`.")  # fmt: skip
            elif not scheduled:
                notify(f"Resuming issue {plan.resume.number} ({plan.resume.subject}): "
                       f"{plan.recipients} to go.")  # fmt: skip
        else:
            assert plan.draft is not None
            notify(f"Issue {plan.draft.number}: {plan.draft.rendered.subject} "
                   f"({plural(len(plan.draft.items), 'item')}) to {plural(plan.recipients, 'subscriber')}.")  # fmt: skip
            if plan.recipients == 0:
                raise UsageError(
                    "there are no active subscribers",
                    hint="Add some with `digest subscribers add`.",
                )
        if confirm is not None:
            confirm(plan)
        settings.secret_key_bytes()  # fail before anything is frozen
        first = _connect(settings, stop)  # exit 75 before anything is frozen if it is down
        try:
            try:
                with session_scope(engine) as session:
                    issue = start_issue(session, plan, period_key=key)
            except IssueRace:
                if not scheduled:
                    raise
                # Another scheduled run made this period's issue a moment ago: help send it.
                with session_scope(engine) as session:
                    joined = join_plan(session)
                if joined is None or joined.resume is None:
                    notify("Another run already sent this period's issue; nothing to do.")
                    return None
                issue = joined.resume
                notify(f"Issue {issue.number} was just made by another run; helping to send it.")
            outcome = _deliver(engine, settings, issue, stop=stop, first=first, notify=notify,
                               progress=progress)  # fmt: skip
            if retrying and not outcome.interrupted and not outcome.unavailable:
                retry_older(engine, settings, exclude=issue.id, stop=stop, notify=notify, now=now)
        finally:
            first.close()
        return outcome


def _connect(settings: Settings, stop: threading.Event) -> SmtpSender:
    """The first connection, made before anything is frozen or claimed."""
    first = SmtpSender(settings.smtp, stop=stop)
    try:
        first.connect()
    except SmtpUnavailable:
        if stop.is_set():
            raise Interrupted("stopped before anything was sent") from None
        raise
    return first


def _deliver(
    engine: Engine,
    settings: Settings,
    issue: Issue,
    *,
    stop: threading.Event,
    notify: Callable[[str], None],
    first: SmtpSender | None = None,
    progress: Callable[[int, int], Callable[[SendProgress], None] | None] | None = None,
    retry_wait: float | None = None,
) -> SendOutcome:
    with session_scope(engine) as session:
        counts = delivery_counts(session, issue.id or 0)
    on_progress = (
        progress(sum(counts.values()), counts["sent"] + counts["failed"] + counts["skipped"])
        if progress
        else None
    )

    def on_wait(when: datetime, addresses: int) -> None:
        notify(
            f"Waiting until {when.astimezone(settings.tz):%H:%M} to retry "
            f"{plural(addresses, 'address', 'addresses')}; stop with Ctrl-C, the next run "
            "retries them."
        )

    return run_issue(
        engine, settings, issue.id or 0, subject=issue.subject, html=issue.html,
        text=issue.text, issue_uid=issue.uid, domain=issue.message_id_domain, stop=stop,
        issue_number=issue.number, first_sender=first, on_progress=on_progress,
        on_wait=on_wait, retry_wait=retry_wait,
    )  # fmt: skip


def retry_older(
    engine: Engine,
    settings: Settings,
    *,
    exclude: int | None,
    stop: threading.Event,
    notify: Callable[[str], None],
    now: datetime,
    first: SmtpSender | None = None,
    progress: Callable[[int, int], Callable[[SendProgress], None] | None] | None = None,
) -> SendOutcome | None:
    """Due retries of earlier issues whose only remaining deliveries are deferred, within
    retry_lifetime_hours. Returns the outcome of the last one retried (None: none was)."""
    with session_scope(engine) as session:
        older = [i for i in retrying_issues(session, now) if i.id != exclude]
    outcome = None
    for issue in older:
        if stop.is_set():
            break
        notify(f"Retrying the deferred deliveries of issue {issue.number} ({issue.subject}).")
        outcome = _deliver(engine, settings, issue, stop=stop, notify=notify, first=first,
                           progress=progress, retry_wait=0)  # fmt: skip
        first = None  # a connection is used by one run only (the run closes it)
    return outcome


def variant_templates(
    engine: Engine, settings: Settings, issue_id: int, *, domain: str | None, signer: Any
) -> dict[int, MessageTemplate]:
    """The message of each variant of the issue, composed once (its HTML was rendered and
    inlined when the issue was made); one DKIM signer for them all."""
    with session_scope(engine) as session:
        rows = variant_rows(session, issue_id)
        return {
            v.id or 0: compose_issue(
                settings, subject=v.subject, html=v.html, text=v.text, domain=domain, signer=signer
            )  # fmt: skip
            for v in rows
        }


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident():x}"[:100]


def run_issue(
    engine: Engine,
    settings: Settings,
    issue_id: int,
    *,
    subject: str,
    html: str,
    text: str,
    issue_uid: str,
    domain: str | None,
    stop: threading.Event,
    issue_number: int | None = None,  # delivery tokens (VERP, mailto:) name the issue by it
    first_sender: SmtpSender | None = None,
    on_progress: Callable[[SendProgress], None] | None = None,
    on_wait: Callable[[datetime, int], None] | None = None,
    retry_wait: float | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> SendOutcome:
    """Send one frozen issue's outstanding deliveries with the configured store, composer,
    recipients, pacer and SMTP connections."""
    pacer = Pacer(settings.send_rate, settings.send_rate_per_hour)
    template = compose_issue(settings, subject=subject, html=html, text=text, domain=domain)
    variants = variant_templates(engine, settings, issue_id, domain=domain, signer=template.signer)
    recipients = Recipients.of(
        settings, issue_uid=issue_uid, key=settings.secret_key_bytes(), domain=domain,
        issue_number=issue_number,
    )  # fmt: skip
    try:
        for each in (template, *variants.values()):  # a composer error is fatal before anything
            each.render(recipients.check_sample())
    except (UnicodeError, ValueError) as exc:
        raise DigestError(
            f"the message cannot be composed: {exc}",
            hint="Check from, reply_to, base_url and list_id in the settings; nothing was sent.",
        ) from None
    store = SqlStore(
        engine, issue_id, worker=worker_name(), lease_seconds=settings.lease_seconds, clock=clock
    )
    try:
        return DeliveryRun(
            store, template, recipients, lambda: SmtpConnection(settings.smtp, stop=stop),
            options=RunOptions.of(settings, pacer, retry_wait), pacer=pacer, stop=stop,
            first_sender=first_sender.connection if first_sender else None,
            loop=first_sender.loop if first_sender else None, on_progress=on_progress,
            on_wait=on_wait, clock=clock, variants=variants,
        ).run()  # fmt: skip
    finally:
        store.close()
