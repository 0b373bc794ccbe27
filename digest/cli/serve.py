"""The web endpoints and the subscriber lifecycle behind them: `digest serve`,
`digest subscribers purge-pending`, and the confirmation emails of
`digest subscribers import --status pending --send-confirmation`."""

from __future__ import annotations

import re
import socket
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from digest.cli._context import State, echo_rejected, state, sub_app
from digest.db import session_scope
from digest.errors import EXIT_ERROR, EXIT_TEMPFAIL, DigestError, UsageError
from digest.text import plural

commands = sub_app()
subscribers_commands = sub_app()  # taken into `digest subscribers`

_DURATION = re.compile(r"^\s*(\d+)\s*(d|days?|w|weeks?|h|hours?)\s*$", re.IGNORECASE)


def parse_duration(text: str, option: str) -> timedelta:
    """'30d', '2w' or '48h' as a timedelta; UsageError otherwise."""
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise UsageError(f"{option}: {text!r} is not a duration; use e.g. 30d, 2w or 48h")
    n, unit = int(match.group(1)), match.group(2)[0].lower()
    return {"d": timedelta(days=n), "w": timedelta(weeks=n), "h": timedelta(hours=n)}[unit]


@commands.command()
def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option(help="Address to listen on; keep 127.0.0.1 behind a reverse proxy.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
) -> None:
    """Run the public web endpoints: subscribe, confirm, unsubscribe (one-click), archive.

    Serves plain HTTP with uvicorn; put a TLS reverse proxy in front of it and set base_url
    to its public https address (links in emails use it). Stop with Ctrl+C.

    Example: digest serve --host 127.0.0.1 --port 8000
    """
    import uvicorn

    from digest.web.app import create_app

    s = state(ctx)
    settings = s.settings
    app = create_app(settings, engine=s.engine())  # a clear error now if the database is not ready
    _check_free(host, port)
    typer.echo(
        f"Serving {settings.name} on http://{host}:{port} (public address {settings.base_url})."
    )
    typer.echo("Press Ctrl+C to stop.")
    uvicorn.run(
        app,
        host=host,
        port=port,
        proxy_headers=True,  # trusts X-Forwarded-* only from FORWARDED_ALLOW_IPS (127.0.0.1)
        server_header=False,
        log_level="debug" if s.verbose else "info",
    )


def _check_free(host: str, port: int) -> None:
    """A clear error before uvicorn starts (it would only log one) if the port is taken."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise DigestError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="Choose another --port, or stop what is using it.",
        ) from None


@subscribers_commands.command("purge-pending")
def subscribers_purge_pending(
    ctx: typer.Context,
    older_than: Annotated[
        str, typer.Option("--older-than", help="Pending for longer than this, e.g. 30d, 2w or 48h.")
    ] = "30d",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list who would be erased.")
    ] = False,
) -> None:
    """Erase pending subscribers who never confirmed (no suppression record is kept).

    Someone who asked for a new confirmation link within the period is kept.

    Example: digest subscribers purge-pending --older-than 30d
    """
    from digest.lifecycle import purge_pending

    s = state(ctx)
    age = parse_duration(older_than, "--older-than")
    with session_scope(s.engine()) as session:
        emails = purge_pending(session, older_than=age, dry_run=dry_run)
    verb = "Would erase" if dry_run else "Erased"
    typer.echo(
        f"{verb} {plural(len(emails), 'pending subscriber')} older than {older_than.strip()}."
    )
    if dry_run or s.verbose:
        for email in emails:
            typer.echo(f"  {email}")


def import_and_confirm(s: State, file: Path, status: str | None, reactivate: bool = False) -> None:
    """`subscribers import --send-confirmation`: import as pending, then email each new
    subscriber a link to confirm. Exit 1 if rows were rejected, 75 if emails did not go out."""
    from digest.send.confirm import import_and_confirm as import_and_send

    if status != "pending":
        raise UsageError(
            "--send-confirmation needs --status pending",
            hint="Subscribers who must confirm are imported as pending.",
        )
    done = import_and_send(s.engine(), s.settings, file, reactivate=reactivate)
    report, failed = done.report, done.not_sent
    typer.echo(
        f"Imported {plural(report.added, 'subscriber')} as pending; "
        f"skipped {len(report.duplicates)} already on the list; rejected {len(report.rejected)}."
    )
    echo_rejected(report.rejected, where="line ")
    typer.echo(f"Sent {plural(len(done.results) - len(failed), 'confirmation email')}.")
    if failed:
        typer.echo(f"{plural(len(failed), 'confirmation email')} not sent:", err=True)
        for email, reply in failed:
            typer.echo(f"  {email}: {reply}", err=True)
        typer.echo(
            "Hint: run the same import again later: it sends only the confirmations that "
            "did not go out.",
            err=True,
        )
        raise typer.Exit(EXIT_TEMPFAIL)
    if report.rejected:
        raise typer.Exit(EXIT_ERROR)
