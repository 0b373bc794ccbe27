"""`digest issues …`: list, show, retry and cancel (approve and refresh are in review.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from digest.cli._context import (
    IssueNumber,
    Yes,
    confirm_on_terminal,
    local_time,
    state,
    sub_app,
    table,
)
from digest.db import session_scope
from digest.models import utcnow
from digest.text import plural

if TYPE_CHECKING:
    from digest.cli._context import State
    from digest.db import Session
    from digest.models import Issue

issues_app = sub_app("Past and unfinished issues, with their delivery counts.")


def _status(session: Session, s: State, issue: Issue, counts: dict[str, int]) -> str:
    """The issue's status in words; "sending" only while a process is sending it: it holds
    leases, or (SQLite) the send lock with this issue's deliveries still to go."""
    from digest.issues.review import NEVER_SENT, PENDING, draft_words
    from digest.issues.state import being_sent, status_words
    from digest.send.lock import send_lock_held

    if issue.status in PENDING or issue.status in NEVER_SENT:
        return draft_words(issue, s.settings)
    active = False
    if issue.status == "sending":
        to_go = counts["queued"] + counts["sending"] > 0
        active = being_sent(session, issue.id or 0, now=utcnow()) or (
            to_go and send_lock_held(s.settings.database_url)
        )
    return status_words(issue, counts, active=active)


@issues_app.command("list")
def issues_list(ctx: typer.Context) -> None:
    """List issues, newest first, with delivery counts.

    Example: digest issues list
    """
    from digest.issues.state import list_issues

    s = state(ctx)
    with session_scope(s.engine()) as session:
        rows = [
            (i.number, local_time(i.created_at, s.settings), _status(session, s, i, c), n_items,
             c["sent"], c["failed"], c["deferred"], c["queued"] + c["sending"], c["skipped"], i.subject[:50])
            for i, c, n_items in list_issues(session)
        ]  # fmt: skip
    if not rows:
        typer.echo("No issues yet. `digest preview` shows what the first would contain.")
        return
    headers = ["#", "created", "status", "items", "sent", "failed", "deferred", "queued",
               "skipped", "subject"]  # fmt: skip
    typer.echo(table(headers, rows))


@issues_app.command("show")
def issues_show(ctx: typer.Context, number: IssueNumber) -> None:
    """Show one issue: its items, delivery counts, bounces and complaints about it, and failed
    or deferred addresses with the server's last reply.

    Example: digest issues show 3
    """
    from digest.issues.state import issue_detail

    s = state(ctx)
    with session_scope(s.engine()) as session:
        detail = issue_detail(session, number)
        status = _status(session, s, detail.issue, detail.counts)
    issue, settings = detail.issue, s.settings
    typer.echo(f"Issue {issue.number}: {issue.subject}")
    typer.echo(
        f"Status: {status}; created {local_time(issue.created_at, settings)}; "
        f"completed {local_time(issue.completed_at, settings)}"
    )
    if status == "unfinished":
        typer.echo("No process is sending it now: `digest send` resumes it.")
    typer.echo(
        f"Period: {local_time(issue.period_start, settings)} to "
        f"{local_time(issue.period_end, settings)} ({settings.timezone})"
    )
    typer.echo("Deliveries: " + ", ".join(f"{n} {k}" for k, n in detail.counts.items()))
    fb = detail.feedback
    typer.echo(
        f"Bounces: {fb.get('permanent', 0)} permanent, {fb.get('temporary', 0)} temporary; "
        f"complaints: {fb.get('complaint', 0)}; unsubscribed by email: {fb.get('unsubscribe', 0)}"
    )
    typer.echo(f"\nItems ({len(detail.items)}):")
    for it in detail.items:
        typer.echo(
            f"  {it.position}. [{it.category or 'News'}] {it.title}\n     {it.url or '(no link)'}"
        )
    if detail.variants:  # readers of some topics get a part of it (issues/variants.py)
        typer.echo(f"\nVariants ({len(detail.variants) - 1}), by the readers' topics:")
        typer.echo(table(["topics", "items", "deliveries"], detail.variants))
    if detail.problems:
        typer.echo("\nFailed and deferred:")
        typer.echo(table(["address", "status", "attempts", "last reply"], detail.problems))


@issues_app.command("retry")
def issues_retry(ctx: typer.Context, number: IssueNumber) -> None:
    """Queue an issue's deferred and failed deliveries again, on purpose; `digest send` then
    sends them (with the same Message-IDs).

    Example: digest issues retry 3 && digest send
    """
    from digest.issues.manage import retry_issue

    with session_scope(state(ctx).engine()) as session:
        n = retry_issue(session, number)
    if n:
        typer.echo(
            f"Queued {plural(n, 'delivery', 'deliveries')} of issue {number} again; "
            "run `digest send` to send them."
        )
    else:
        typer.echo(f"Issue {number} has no deferred or failed deliveries.")


@issues_app.command("cancel")
def issues_cancel(
    ctx: typer.Context,
    number: IssueNumber,
    yes: Yes = False,
) -> None:
    """Stop an unfinished issue: its deliveries not yet made are skipped and never sent.

    Use it for a stale issue that `digest send --scheduled` will not send late.

    Example: digest issues cancel 3 --yes
    """
    from digest.issues.manage import cancel_issue

    confirm_on_terminal(f"Cancel the rest of issue {number}?", yes=yes)
    with session_scope(state(ctx).engine()) as session:
        done = cancel_issue(session, number)
    if done.discarded:
        typer.echo(f"Discarded draft issue {number}: nothing was sent; its items go into the "
                   "next issue.")  # fmt: skip
    else:
        n = done.skipped
        typer.echo(
            f"Cancelled issue {number}: {plural(n, 'delivery', 'deliveries')} will not be sent."
        )
