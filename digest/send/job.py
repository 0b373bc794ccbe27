"""The whole of `digest send`: plan, confirm, freeze, deliver."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Engine

from digest.config import Settings
from digest.db import session_scope
from digest.errors import UsageError
from digest.issues import (
    IssueRace,
    delivery_counts,
)
from digest.models import utcnow
from digest.send.lock import send_lock
from digest.send.mailer import SmtpSender
from digest.send.plan import SendPlan, join_plan, plan_scheduled, plan_send, start_issue
from digest.send.run import DeliveryRun, SendOutcome, SendProgress
from digest.text import plural


def send_next(
    engine: Engine,
    settings: Settings,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    scheduled: bool = False,
    worker: bool = False,
    force: bool = False,
    notify: Callable[[str], None],
    confirm: Callable[[SendPlan], None] | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[int, int], Callable[[SendProgress], None] | None] | None = None,
    now: datetime | None = None,
    note_markdown: str | None = None,
    featured_url: str | None = None,
) -> SendOutcome | None:
    """The whole of `digest send`: decide what to send, freeze it, deliver it.

    Returns None when there is nothing to do. Nothing is frozen before the SMTP server has
    answered, so a send that cannot connect leaves no half-made issue behind.
    """
    now = now or utcnow()
    with send_lock(settings.database_url):
        key: str | None = None
        with session_scope(engine) as session:
            if worker:
                plan = join_plan(session)
                if plan is None:
                    notify("No issue is being sent; nothing for a worker to do.")
                    return None
            elif scheduled:
                decision = plan_scheduled(session, settings, now=now, force=force)
                notify(decision.message)
                if decision.plan is None:
                    return None
                plan, key = decision.plan, decision.key
            else:
                plan = plan_send(session, settings, since=since, until=until,
                                 note_markdown=note_markdown, featured_url=featured_url)  # fmt: skip
                if plan is None:
                    notify("No new items since the last issue; nothing to send.")
                    return None
        if plan.resume is not None:
            if not scheduled:
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
        first = SmtpSender(settings.smtp)
        first.connect()  # exit 75 before anything is frozen if the server is down
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
            with session_scope(engine) as session:
                counts = delivery_counts(session, issue.id or 0)
            on_progress = (
                progress(
                    sum(counts.values()), counts["sent"] + counts["failed"] + counts["skipped"]
                )
                if progress
                else None
            )
            return DeliveryRun(
                engine, settings, issue.id or 0, lambda: SmtpSender(settings.smtp),
                first_sender=first, stop=stop, on_progress=on_progress,
            ).run()  # fmt: skip
        finally:
            first.close()
