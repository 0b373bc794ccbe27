"""Review before the weekly job sends: `digest issues approve` and `digest issues refresh`
(the drafts of review = "required"), and the relay check of `digest check --smtp`."""

from __future__ import annotations

import typer

from digest.cli._context import By, IssueNumber, State, local_time, state, sub_app
from digest.db import session_scope
from digest.errors import ConfigError, DigestError
from digest.models import utcnow

review_commands = sub_app()


@review_commands.command("approve")
def issues_approve(
    ctx: typer.Context,
    number: IssueNumber,
    by: By = None,
) -> None:
    """Approve draft issue N (review = "required"): the next `digest send --scheduled` (or
    `digest send`) sends it to the list. Records who approved it and when. Items added
    after approval wait for the next issue.

    Example: digest issues approve 12 --by "Ana Jones"
    """
    from digest.issues.review import approve_issue
    from digest.secret_files import current_user

    s = state(ctx)
    who = (by or "").strip() or current_user()
    with session_scope(s.engine()) as session:
        issue = approve_issue(session, s.settings, number, by=who, now=utcnow())
    typer.echo(
        f"Approved issue {issue.number} ({issue.subject}) as {who} at "
        f"{local_time(issue.approved_at, s.settings)}."
    )
    typer.echo("The next `digest send --scheduled` sends it to the list.")


@review_commands.command("refresh")
def issues_refresh(ctx: typer.Context, number: IssueNumber) -> None:
    """Select the items of draft issue N again, until now (items added, removed or held since
    it was drafted count), before it is approved. Its age starts again from now.

    Example: digest issues refresh 12 && digest send --to me@example.org
    """
    from digest.issues.review import items_said, refresh_draft

    s = state(ctx)
    with session_scope(s.engine()) as session:
        done = refresh_draft(session, s.settings, number, now=utcnow())
    typer.echo(f"Refreshed draft issue {number}: {items_said(done)}.")
    for title in done.added:
        typer.echo(f"  + {title}")
    for title in done.removed:
        typer.echo(f"  - {title}")
    typer.echo(f"Subject: {done.issue.subject}")


def check_relay_command(s: State) -> None:
    """`digest check --smtp`: the relay's report, exit 1 with what to do on failure."""
    from digest.send.relay import check_relay, format_relay_report

    report = check_relay(s.settings)
    typer.echo(format_relay_report(report))
    if not report.ok:
        failed = next(step for step in report.steps if step.status == "error")
        error = ConfigError if report.settings_wrong else DigestError  # exit 3 or 1
        raise error(f"relay check, {failed.name}: {failed.detail}", hint=report.hint)
