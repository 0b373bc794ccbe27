"""`digest inbox fetch|receive` (read what comes back), `digest bounces list`, and
`digest subscribers reactivate` (registered on the subscribers group in __init__)."""

from __future__ import annotations

import json
import os
import sys
import traceback
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from digest.cli._context import Address, local_time, state, sub_app, table, when
from digest.db import session_scope
from digest.errors import EXIT_TEMPFAIL, DigestError

inbox_app = sub_app("What comes back after a send: bounces, complaints and emailed unsubscribes.")
bounces_app = sub_app("Bounce, complaint and emailed-unsubscribe events.")
reactivate_commands = sub_app()  # `digest subscribers reactivate`


@inbox_app.command("fetch")
def inbox_fetch(
    ctx: typer.Context,
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help="Mailboxes: imaps://user@host/INBOX, imap+starttls://…, a Maildir folder, "
            "mbox:FILE (default: the setting inbox_url).",
            show_default=False,
            metavar="SOURCE...",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="List each message.")] = False,
) -> None:
    """Read the bounce mailbox and act on each new message: a permanent bounce (or enough
    temporary ones) marks the subscriber `bounced`, a complaint or an emailed unsubscribe
    unsubscribes them. Nothing is deleted; mail for a person is left where it is.

    Example: digest inbox fetch imaps://bounces@mail.example.org/INBOX
    """
    from digest.inbound.inbox import fetch_inbox

    s = state(ctx)
    verbose = verbose or s.verbose

    def show(where: str, o: object) -> None:
        from digest.inbound.act import Outcome

        assert isinstance(o, Outcome)
        what = "already seen" if o.already_seen else o.kind.replace("_", "-")
        who = f" {o.email}" if o.email else ""
        changed = " (status changed)" if o.changed else ""
        typer.echo(f"  {where}: {what}{who}{changed}: {o.detail}")

    summary = fetch_inbox(
        s.engine(), s.settings, sources or [], on_outcome=show if verbose else None
    )
    if summary.smtp_failures:
        typer.echo(
            f"{summary.smtp_failures} refused during sending (5xx) counted as permanent bounces."
        )
    typer.echo(summary.line())


@inbox_app.command("receive")
def inbox_receive(
    ctx: typer.Context,
    recipient: Annotated[
        str | None,
        typer.Option(
            help="The envelope recipient (default: $ORIGINAL_RECIPIENT or $RECIPIENT, which "
            "Postfix's local(8) sets for a pipe).",
            show_default=False,
        ),
    ] = None,
    keep: Annotated[
        Path | None,
        typer.Option(help="A Maildir where messages for a person are kept (a pipe has no inbox)."),
    ] = None,
) -> None:
    """Read one message on standard input and act on it, for an MTA pipe. Exit 0: accepted
    (acted on, already seen or for a person, kept in --keep); 75: a temporary failure, the
    MTA keeps the message and tries again. Never any other code: no bounce of a bounce.

    Example (Postfix alias): bounces: "|/srv/digest/.venv/bin/digest inbox receive --keep /srv/digest/for-a-person"
    """
    from digest.inbound.inbox import receive_message

    s = state(ctx)
    rcpt = recipient or os.environ.get("ORIGINAL_RECIPIENT") or os.environ.get("RECIPIENT")
    try:
        raw = sys.stdin.buffer.read()
        outcome = receive_message(s.engine(), s.settings, raw, recipient=rcpt, keep=keep)
    except Exception as exc:  # every failure is temporary for the MTA: it retries, never bounces
        message = exc.message if isinstance(exc, DigestError) else f"{type(exc).__name__}: {exc}"
        typer.echo(f"Error: {message} (the MTA will try again)", err=True)
        if s.verbose:
            traceback.print_exc()
        raise typer.Exit(EXIT_TEMPFAIL) from None
    what = "already seen" if outcome.already_seen else outcome.kind.replace("_", "-")
    typer.echo(f"{what}{' ' + outcome.email if outcome.email else ''}: {outcome.detail}")


class EventFormat(StrEnum):
    table = "table"
    json = "json"


@bounces_app.command("list")
def bounces_list(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(help="Only events since then: a date, a time, or e.g. '7 days ago'."),
    ] = None,
    format: Annotated[EventFormat, typer.Option("--format", help="table or json.")] = (
        EventFormat.table
    ),
) -> None:
    """List bounce, complaint and emailed-unsubscribe events: when, address, kind, status
    code, diagnostic and the bounce score after each.

    Example: digest bounces list --since "30 days ago" --format json
    """
    from digest.inbound.act import list_events

    s = state(ctx)
    with session_scope(s.engine()) as session:
        events = list_events(session, since=when(since, s.settings, "--since"))
    if format == EventFormat.json:
        records = [
            {
                "at": e.at.isoformat(timespec="seconds"), "email": e.email, "kind": e.kind,
                "status": e.status, "diagnostic": e.diagnostic, "counted": e.counted,
                "score_after": e.score_after,
            }
            for e in events
        ]  # fmt: skip
        typer.echo(json.dumps(records, indent=2, ensure_ascii=False))
        return
    rows = [
        (
            local_time(e.at, s.settings), e.email, e.kind, e.status or "-",
            (e.diagnostic[:60] or "-"), f"{e.score_after:g}" + ("" if e.counted else " (not counted)"),
        )
        for e in events
    ]  # fmt: skip
    typer.echo(table(["when", "address", "kind", "code", "diagnostic", "score after"], rows))
    typer.echo(f"{len(rows)} event{'s' if len(rows) != 1 else ''}")


@reactivate_commands.command("reactivate")
def subscribers_reactivate(ctx: typer.Context, email: Address) -> None:
    """Make a `bounced` subscriber active again (their address works again), score zero. An
    unsubscribed person can only subscribe again themselves.

    Example: digest subscribers reactivate ana@example.org
    """
    from digest.inbound.act import reactivate_subscriber

    s = state(ctx)
    with session_scope(s.engine()) as session:
        sub = reactivate_subscriber(session, email)
    typer.echo(f"Re-activated {sub.email}: they get the next issue.")
