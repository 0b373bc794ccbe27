"""Look, then send: `digest preview`, `digest check` and `digest send`."""

from __future__ import annotations

import json
import webbrowser
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from digest.cli._context import (
    Featured,
    Note,
    Since,
    Until,
    next_issue,
    send_display,
    state,
    sub_app,
)
from digest.cli.news import fetch_before
from digest.cli.review import check_relay_command
from digest.config import Settings
from digest.db import session_scope
from digest.errors import EXIT_ERROR, UsageError
from digest.text import plural

if TYPE_CHECKING:
    from digest.send.outcome import SendOutcome
    from digest.send.plan import SendPlan
    from digest.send.safe import Copies


commands = sub_app()


@commands.command()
def preview(
    ctx: typer.Context,
    since: Since = None,
    until: Until = None,
    note: Note = None,
    featured: Featured = None,
    out: Annotated[
        Path, typer.Option(help="Folder for digest.html, digest.txt, digest.eml and views.html.")
    ] = Path("preview"),
    open_: Annotated[bool, typer.Option("--open", help="Open the HTML in your browser.")] = False,
    fetch: Annotated[
        bool, typer.Option("--fetch", help="Fetch every news source first (see `digest feeds`).")
    ] = False,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Serve the preview on 127.0.0.1: desktop and phone widths side by side (Ctrl-C stops).",
        ),
    ] = False,
    port: Annotated[int, typer.Option(help="Port for --serve (0: any free port).")] = 8025,
) -> None:
    """Render the digest the next send would produce, without sending or recording anything.

    Writes digest.html, digest.txt, digest.eml and views.html (the HTML at desktop and
    phone widths side by side), and says what the size guard cut to stay under Gmail's
    clipping limit.

    Example: digest preview --note note.md --featured https://example.org/news/1 --serve
    """
    from digest.issues.review import pending_note
    from digest.issues.select import draft_issue
    from digest.issues.variants import describe_parts, draft_parts
    from digest.send.safe import preview_files

    s = state(ctx)
    settings = s.settings
    shape = next_issue(settings, since=since, until=until, note=note, featured=featured)
    if fetch:
        fetch_before(s)
    with session_scope(s.engine()) as session:
        draft, waiting = draft_issue(session, settings, shape), pending_note(session)
        parts = draft_parts(session, draft.items, draft.audience) if draft else []
    if waiting:
        typer.echo(waiting)
    if draft is None:
        typer.echo("No new items for the next issue; nothing to preview.")
        return
    paths = preview_files(settings, draft, out)
    typer.echo(f"Issue {draft.number}: {draft.rendered.subject}")
    typer.echo(
        f"{plural(len(draft.items), 'item')} in {plural(len(draft.rendered.sections), 'section')}."
    )
    html_kb = len(paths["html"].read_bytes()) / 1024
    typer.echo(
        f"Wrote {paths['html']} ({html_kb:.0f} KB), {paths['text']}, {paths['eml']} and {paths['views']}."
    )
    for line in draft.rendered.fit.describe() if draft.rendered.fit else []:
        typer.echo(f"Size guard: {line}")
    for line in describe_parts(parts):  # the files show the whole issue
        typer.echo(line)
    if open_:
        webbrowser.open(paths["html"].resolve().as_uri())
    if serve:
        _serve_preview(out, port)


def _serve_preview(folder: Path, port: int) -> None:
    """`preview --serve`: the folder on 127.0.0.1 until Ctrl-C."""
    from digest.render.views import VIEWS, serve_folder

    try:
        server = serve_folder(folder, port)
    except OSError as exc:
        raise UsageError(
            f"--port {port}: {exc.strerror}", hint="Try --port 0 for any free port."
        ) from None
    url = f"http://127.0.0.1:{server.server_address[1]}/{VIEWS}"
    typer.echo(f"Serving the preview at {url} (Ctrl-C to stop).")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("Stopped.")
    finally:
        server.server_close()


@commands.command()
def check(
    ctx: typer.Context,
    json_: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    note: Annotated[
        Path | None, typer.Option("--note", help="The editor's note you will send with.")
    ] = None,
    featured: Annotated[
        str | None, typer.Option("--featured", help="The featured item you will send with.")
    ] = None,
    smtp: Annotated[
        bool,
        typer.Option(
            "--smtp",
            help="Check the relay instead: connect, TLS, EHLO, login, MAIL FROM then RSET; sends nothing.",
        ),
    ] = False,
) -> None:
    """Lint the message the next send would produce; exit code 1 if anything must be fixed.

    Checks the headers, one-click unsubscribe and the unsubscribe link in both bodies, the
    HTML size against Gmail's clipping, images without alt text, links that are not absolute,
    leftover placeholders, DKIM alignment and signature, the postal address and base URL.
    Sends nothing and stores nothing.

    With --smtp, check the relay instead, as a send would reach it (exit 1 on failure).

    Example: digest check   or: digest check --json   or: digest check --smtp
    """
    from digest.check import check_next_send, format_report

    s = state(ctx)
    if smtp:
        return check_relay_command(s)
    shape = next_issue(s.settings, note=note, featured=featured)
    with session_scope(s.engine()) as session:
        report = check_next_send(session, s.settings, shape)
    if json_:
        typer.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        typer.echo(format_report(report))
    if not report.ok:
        raise typer.Exit(EXIT_ERROR)


@commands.command()
def send(
    ctx: typer.Context,
    to: Annotated[
        list[str] | None,
        typer.Option(
            "--to", help="Send a test copy only to this address (repeatable); records nothing."
        ),
    ] = None,
    since: Since = None,
    until: Until = None,
    note: Note = None,
    featured: Featured = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Write every message to a folder instead of sending; records nothing."
        ),
    ] = False,
    out: Annotated[Path, typer.Option(help="Folder for --dry-run messages.")] = Path("dry-run"),
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask for confirmation on a terminal.")
    ] = False,
    fetch: Annotated[
        bool,
        typer.Option(
            "--fetch",
            help="Fetch every news source first; a source that fails only warns (cron: digest send --scheduled --fetch).",
        ),
    ] = False,
    scheduled: Annotated[
        bool,
        typer.Option(
            "--scheduled",
            help="The cron/systemd job: one issue per period (schedule = weekly|daily); resumes it if unfinished, does nothing if complete.",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="With --scheduled: finish an unfinished issue even if older than max_issue_age_hours.",
        ),
    ] = False,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker",
            help="Help send the issue already being sent (PostgreSQL: run several, on any machines); never starts one.",
        ),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            help="Print nothing when there is nothing to do (cron mails any output to its owner); errors and sends are still reported.",
        ),
    ] = False,
) -> None:
    """Send the next issue to every active subscriber, or resume an unfinished one.

    Freezes the new items into an issue, queues one delivery per active subscriber, sends,
    and records each outcome. Running it again after an interruption resumes the same issue
    and never sends a second copy to anyone recorded as sent. Exit code 75 means some
    deliveries failed temporarily: run it again later.

    \b
    Examples:
      digest send --to me@example.org    a test copy first
      digest send                        then the whole list
      digest send --scheduled --fetch    the cron/systemd job
      digest send --scheduled --quiet    from cron: no mail for runs that do nothing
    """
    from digest.send.job import send_next
    from digest.send.safe import send_copies

    copies = bool(to or dry_run)
    _check_send_options(copies=copies, scheduled=scheduled, worker=worker, force=force,
                        shapes_issue=bool(note or featured))  # fmt: skip
    s = state(ctx)
    settings, engine = s.settings, s.engine()
    shape = next_issue(settings, since=since, until=until, note=note, featured=featured)
    if fetch:
        fetch_before(s)
    if copies:
        done = send_copies(engine, settings, shape, to=to or [], folder=out if dry_run else None)
        _present_copies(done)
        return
    said = _Said(quiet)
    try:
        with send_display(ask=not yes and not worker) as display:

            def confirm(plan: SendPlan) -> None:
                said.flush()  # something will be sent: say what, then ask
                display.confirm(plan)

            outcome = send_next(
                engine, settings, scheduled=scheduled, worker=worker, force=force,
                notify=said, confirm=confirm, stop=display.stop,
                progress=display.progress, shape=shape, acted=said.flush,
            )  # fmt: skip
    except BaseException:
        said.flush()  # what led to the error
        raise
    if outcome is not None:
        said.flush()
    _present_outcome(outcome, settings)


class _Said:
    """What a send says as it goes; with --quiet, kept back until the run turns out to do
    something (or fails), so a run with nothing to do prints nothing."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.lines = quiet, list[str]()

    def __call__(self, line: str) -> None:
        if self.quiet:
            self.lines.append(line)
        else:
            typer.echo(line)

    def flush(self) -> None:
        for line in self.lines:
            typer.echo(line)
        self.lines.clear()
        self.quiet = False


def _check_send_options(
    *, copies: bool, scheduled: bool, worker: bool, force: bool, shapes_issue: bool
) -> None:
    if sum([copies, scheduled, worker]) > 1:
        raise UsageError("--to/--dry-run, --scheduled and --worker cannot be combined")
    if force and not scheduled:
        raise UsageError("--force only applies to --scheduled")
    if shapes_issue and (scheduled or worker):
        raise UsageError(
            "--note and --featured shape a new issue: not with --scheduled or --worker"
        )


def _present_copies(done: Copies | None) -> None:
    """`send --dry-run` and `send --to`: what was written or sent; exit 1 if a copy was refused."""
    if done is None:
        typer.echo("No new items for the next issue; nothing to send.")
        return
    if done.about != "the next issue":
        typer.echo(f"A copy of {done.about}.")
    if done.folder is not None:
        typer.echo(
            f"Dry run: wrote {plural(done.written, 'message')} to {done.folder}/; "
            "nothing was sent or recorded."
        )
    else:
        for address, result in done.sent:
            said = "sent" if result.outcome == "sent" else "NOT sent"
            typer.echo(f"Test copy to {address}: {said} ({result.reply})")
        if any(result.outcome != "sent" for _, result in done.sent):
            raise typer.Exit(EXIT_ERROR)


def _present_outcome(outcome: SendOutcome | None, settings: Settings) -> None:
    """The counts and what they mean; the exit code comes with the report's error (0
    complete, 65 complete with permanent failures, 75 run again later, 130 interrupted)."""
    if outcome is None:
        return
    from digest.send.outcome import outcome_report

    report = outcome_report(outcome, settings)
    for line in report.lines:
        typer.echo(line)
    for line in report.warnings:
        typer.echo(line, err=True)
    if report.error is not None:
        raise report.error
