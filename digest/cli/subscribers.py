"""`digest subscribers …`: add, set, list, import, export, unsubscribe, confirm, remove.

(`subscribers purge-pending` and `import --send-confirmation` are in serve.py, with the rest
of the opt-in lifecycle.)
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from digest.cli._context import (
    Address,
    Format,
    OutputFormat,
    Yes,
    confirm_on_terminal,
    exit_if_rejected,
    local_time,
    state,
    sub_app,
    table,
)
from digest.db import session_scope
from digest.errors import UsageError
from digest.models import SubscriberStatus
from digest.text import plural

if TYPE_CHECKING:
    from digest.topics import Preferences

subscribers_app = sub_app("Manage the subscriber list.")


class NewStatus(StrEnum):
    active = "active"
    pending = "pending"


class ExportFormat(StrEnum):
    csv = "csv"
    excel = "excel"


Topics = Annotated[
    list[str] | None,
    typer.Option("--topic", help="A topic they want (repeat for several); none: every topic."),
]
Frequency = Annotated[
    str | None,
    typer.Option(help="weekly or daily (one of the frequencies setting).", show_default=False),
]


@subscribers_app.command("add")
def subscribers_add(
    ctx: typer.Context,
    email: Address,
    name: Annotated[str | None, typer.Option(help="The person's name.")] = None,
    status: Annotated[
        NewStatus, typer.Option(help="active, or pending until they confirm.")
    ] = NewStatus.active,
    topic: Topics = None,
    frequency: Frequency = None,
) -> None:
    """Add one subscriber, with the topics they want (default: every topic) and how often.

    Example: digest subscribers add ana@example.org --name "Ana Jones" --topic Training
    """
    from digest.preferences import add_choosing

    s = state(ctx)
    with session_scope(s.engine()) as session:
        sub, prefs = add_choosing(
            session, s.settings, email=email, name=name, status=SubscriberStatus(status.value),
            topics=topic or [], frequency=frequency,
        )  # fmt: skip
        chose = f"; {_choice(prefs)}" if topic or frequency else ""
        typer.echo(f"Added {sub.email} ({sub.status}{chose}).")


def _choice(prefs: Preferences) -> str:
    return f"{', '.join(prefs.topics) or 'every topic'}, {prefs.frequency}"


@subscribers_app.command("set")
def subscribers_set(
    ctx: typer.Context,
    email: Address,
    topic: Topics = None,
    all_topics: Annotated[
        bool, typer.Option("--all-topics", help="Every topic (clears their --topic choice).")
    ] = False,
    frequency: Frequency = None,
) -> None:
    """Change what a subscriber receives: their topics and how often. Logged in the consent log.

    Example: digest subscribers set ana@example.org --topic Training --topic Research --frequency daily
    """
    from digest.preferences import set_preferences_of

    if all_topics and topic:
        raise UsageError("give --topic or --all-topics, not both")
    chosen = [] if all_topics else (topic or None)
    s = state(ctx)
    with session_scope(s.engine()) as session:
        changes, prefs = set_preferences_of(
            session, s.settings, email, topics=chosen, frequency=frequency
        )
    if not changes:
        typer.echo(f"{email.strip()} already receives {_choice(prefs)}; nothing changed.")
    for line in changes:
        typer.echo(f"{email.strip()}: {line}")


@subscribers_app.command("list")
def subscribers_list(
    ctx: typer.Context,
    status: Annotated[SubscriberStatus | None, typer.Option(help="Only this status.")] = None,
    format: Format = OutputFormat.table,
) -> None:
    """List subscribers.

    Example: digest subscribers list --status active --format csv
    """
    from digest.export import EXPORT_HEADER, subscriber_rows, write_csv
    from digest.preferences import listing

    s = state(ctx)
    with session_scope(s.engine()) as session:
        subs, topics = listing(session, s.settings, status)
        if format == OutputFormat.csv:
            write_csv(subs, sys.stdout, topics=topics)
        elif format == OutputFormat.json:
            exported = subscriber_rows(subs, topics)
            records = [dict(zip(EXPORT_HEADER, r, strict=True)) for r in exported]
            typer.echo(json.dumps(records, indent=2, ensure_ascii=False))
        else:
            rows = [(u.email, u.name, u.status, topics.get(u.id or 0) or "(all)", u.frequency,
                     local_time(u.created_at, s.settings)) for u in subs]  # fmt: skip
            head = ["email", "name", "status", "topics", "frequency", "added"]
            typer.echo(table(head, rows))
            typer.echo(plural(len(rows), "subscriber"))


@subscribers_app.command("import")
def subscribers_import(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV with a header row: email (required), name, the consent columns of "
            "an export (status, status_source, created_at, status_changed_at, confirmed_at), "
            "topics (names, ';' between) and frequency."
        ),
    ],
    status: Annotated[
        NewStatus | None,
        typer.Option(
            help="Status of the new subscribers (default: each row's own status, else active). "
            "An unsubscribed or bounced row stays so unless --reactivate.",
            show_default=False,
        ),
    ] = None,
    reactivate: Annotated[
        bool,
        typer.Option(
            "--reactivate",
            help="Give unsubscribed and bounced rows the --status too (they withdrew "
            "consent: prefer --status pending --send-confirmation).",
        ),
    ] = False,
    send_confirmation: Annotated[
        bool,
        typer.Option(
            "--send-confirmation",
            help="Email each new pending subscriber a link to confirm (needs --status pending).",
        ),
    ] = False,
) -> None:
    """Import subscribers from a CSV file, or an export back as it was; report every rejected row.

    Valid rows are added and duplicates skipped; the exit code is 1 if any row was rejected.
    A row that says unsubscribed or bounced is imported as such, never active. With --status
    pending --send-confirmation (a list whose consent must be re-confirmed), each new
    subscriber is emailed a link to confirm; exit code 75 if some emails did not go out.

    \b
    Examples:
      digest subscribers import people.csv
      digest subscribers import list.csv                 an export, on a new server
      digest subscribers import old.csv --status pending --send-confirmation
    """
    from digest.subscribers import import_subscribers

    if send_confirmation:
        from digest.cli.serve import import_and_confirm

        import_and_confirm(state(ctx), file, status.value if status else None, reactivate)
        return
    s = state(ctx)
    with session_scope(s.engine()) as session:
        report = import_subscribers(
            session, file, keyring=s.settings.keyring(),
            status=SubscriberStatus(status.value) if status else None, reactivate=reactivate,
            allow_special_use=s.settings.allow_special_use_domains, settings=s.settings,
        )  # fmt: skip
    typer.echo(
        f"Imported {plural(report.added, 'subscriber')}; "
        f"skipped {len(report.duplicates)} already on the list; rejected {len(report.rejected)}."
    )
    if s.verbose:
        for line, email in report.duplicates:
            typer.echo(f"  line {line}: {email} is already on the list")
    for line, email, new_status in report.suppressed:
        typer.echo(f"  line {line}: {email} is now {new_status}, as in the file")
    exit_if_rejected(report.rejected, where="line ")


@subscribers_app.command("export")
def subscribers_export(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Where to write the CSV ('-' for standard output).")],
    status: Annotated[SubscriberStatus | None, typer.Option(help="Only this status.")] = None,
    format: Annotated[
        ExportFormat,
        typer.Option("--format", help="csv, or excel: UTF-8 with a byte-order mark for Excel."),
    ] = ExportFormat.csv,
) -> None:
    """Export subscribers with their consent (status, its source and times), topics and
    frequency to CSV: readable by
    you only, spreadsheet-safe (formula-like cells are escaped), and `subscribers import` reads
    it back as it was.

    Example: digest subscribers export list.csv --format excel
    """
    from digest.export import export_subscribers, write_csv
    from digest.preferences import listing

    excel = format == ExportFormat.excel
    s = state(ctx)
    with session_scope(s.engine()) as session:
        if str(file) == "-":
            subs, topics = listing(session, s.settings, status)
            write_csv(subs, sys.stdout, excel=excel, topics=topics)
            return
        n = export_subscribers(session, file, status, excel=excel, settings=s.settings)
    typer.echo(f"Exported {plural(n, 'subscriber')} to {file}.")


@subscribers_app.command("unsubscribe")
def subscribers_unsubscribe(ctx: typer.Context, email: Address) -> None:
    """Unsubscribe an address now; an issue being sent skips them.

    Example: digest subscribers unsubscribe ana@example.org
    """
    from digest.subscribers import unsubscribe

    with session_scope(state(ctx).engine()) as session:
        changed = unsubscribe(session, email)
    typer.echo(
        f"Unsubscribed {email.strip()}."
        if changed
        else f"{email.strip()} was already unsubscribed."
    )


@subscribers_app.command("confirm")
def subscribers_confirm(ctx: typer.Context, email: Address) -> None:
    """Make a pending subscriber active (for consent received another way).

    Example: digest subscribers confirm ana@example.org
    """
    from digest.subscribers import confirm_subscriber

    with session_scope(state(ctx).engine()) as session:
        sub = confirm_subscriber(session, email)
    typer.echo(f"Confirmed {sub.email}.")


@subscribers_app.command("remove")
def subscribers_remove(
    ctx: typer.Context,
    email: Address,
    yes: Yes = False,
) -> None:
    """Erase a person: their details and history go; only a keyed hash stays, so they are not
    re-added.

    Example: digest subscribers remove ana@example.org --yes
    """
    from digest.subscribers import remove_subscriber

    confirm_on_terminal(f"Erase {email.strip()} and their history?", yes=yes)
    s = state(ctx)
    with session_scope(s.engine()) as session:
        remove_subscriber(session, email, keyring=s.settings.keyring())
    typer.echo(f"Removed {email.strip()}.")
