"""The `digest` command line: parse, call one library function, present the result.

Errors are translated in one place (`_DigestGroup.invoke`): `Error: …` and a hint on stderr,
a non-zero exit code, and a traceback only with --verbose.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
import threading
import time
import traceback
import webbrowser
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.engine import Engine
from typer.core import TyperGroup

from digest import __version__
from digest.cli_feeds import feeds_app, fetch_before, import_feed_source, news_import_page
from digest.config import LoadedSettings, Settings, describe_settings, key_warnings, load_settings
from digest.dates import parse_when
from digest.db import check_schema, make_engine, session_scope, upgrade
from digest.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_TEMPFAIL,
    DigestError,
    Interrupted,
    SmtpUnavailable,
    UsageError,
)
from digest.models import SubscriberStatus


class _DigestGroup(TyperGroup):
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except DigestError as exc:
            _report(ctx, exc, exc.message, exc.hint)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            typer.echo("Interrupted.", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            _quiet_broken_pipe()
            ctx.exit(EXIT_BROKEN_PIPE)
        except Exception as exc:  # a bug, or something we did not foresee: say so plainly
            known = _known_failure(ctx, exc)
            if known is not None:
                _report(ctx, exc, known.message, known.hint)
                ctx.exit(known.exit_code)
            _report(ctx, exc, f"unexpected {type(exc).__name__}: {exc}", None, expected=False)
            ctx.exit(EXIT_ERROR)


# `digest … | head` closes the pipe early: stop quietly, as a command killed by SIGPIPE does.
EXIT_BROKEN_PIPE = 141


def _quiet_broken_pipe() -> None:
    # Anything still buffered for stdout would raise again at exit: send it nowhere.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # not a real file descriptor (tests): nothing buffered to lose


def _known_failure(ctx: Any, exc: Exception) -> DigestError | None:
    """A clear error for a failure of the machine rather than of digest (a full disk, a file
    or folder we may not write, a database file that is not one), or None."""
    from digest.db import explain_database_error
    from digest.errors import explain_os_error

    state = ctx.obj if isinstance(ctx.obj, State) else None
    url = state._loaded.settings.database_url if state and state._loaded else None
    if isinstance(exc, OSError):
        return explain_os_error(exc)
    return explain_database_error(exc, url)


def _report(
    ctx: Any, exc: BaseException, message: str, hint: str | None, *, expected: bool = True
) -> None:
    verbose = isinstance(ctx.obj, State) and ctx.obj.verbose
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    typer.echo(f"Error: {message}", err=True)
    if hint:
        typer.echo(f"Hint: {hint}", err=True)
    elif not verbose and not expected:
        typer.echo("Hint: run with --verbose for the traceback.", err=True)


def _typer(help_text: str) -> typer.Typer:
    return typer.Typer(
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,  # locals would include the SMTP password
        rich_markup_mode=None,
    )


app = typer.Typer(
    cls=_DigestGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)
subscribers_app = _typer("Manage the subscriber list.")
news_app = _typer("Add, list and import news items.")
issues_app = _typer("Past and unfinished issues, with their delivery counts.")
config_app = _typer("Show the effective settings.")
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(news_app, name="news")
app.add_typer(issues_app, name="issues")
app.add_typer(config_app, name="config")
app.add_typer(feeds_app, name="feeds")
news_app.command("import-page")(news_import_page)


@dataclass
class State:
    config_path: str | None = None
    db: str | None = None
    verbose: bool = False
    _loaded: LoadedSettings | None = None
    _engine: Engine | None = None
    _engines: list[Engine] = field(default_factory=list)

    def loaded(self) -> LoadedSettings:
        if self._loaded is None:
            self._loaded = load_settings(self.config_path, overrides={"database_url": self.db})
        return self._loaded

    @property
    def settings(self) -> Settings:
        return self.loaded().settings

    def engine(self, *, check: bool = True) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.settings.database_url)
        if check:
            check_schema(self._engine, self.settings.database_url)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"digest {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Database URL or SQLite file (default: DIGEST_DATABASE_URL, "
            "then sqlite:///subscribers.db)",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            help="Config file (default: DIGEST_CONFIG, then ./digest.toml)",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="More detail; tracebacks on errors.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """digest: gather news items into a weekly email and send it to your subscribers.

    Example: digest init && digest subscribers add ana@example.org && digest send
    """
    state = State(config_path=config, db=db, verbose=verbose)
    ctx.obj = state
    ctx.call_on_close(state.close)


def _state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    assert isinstance(obj, State)
    return obj


def _when(value: str | None, settings: Settings, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_when(value, settings.tz)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _local(moment: datetime | None, settings: Settings) -> str:
    return moment.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M") if moment else "-"


# init / config ---------------------------------------------------------------------------

STARTER_CONFIG = """\
# digest configuration. Every setting can also be set with a DIGEST_<NAME> environment variable
# (for example DIGEST_SMTP_URL), which wins over this file. `digest config show` prints the
# effective values. Secrets (the SMTP password, the secret key) never go in this file.

# The newsletter
name = "Weekly digest"
from = "Weekly digest <news@example.org>"     # one address on your organisation's domain
# reply_to = "Comms team <comms@example.org>"
# base_url = "https://news.example.org"        # public address of `digest serve`: unsubscribe and archive links
organisation = "Example Organisation"
postal_address = "1 Example Street, Exampletown, EX1 1EX"
# subject = "{{ name }}: {{ date_range }}"      # variables: name, date_range, number, count, top_title
# timezone = "Europe/London"
# lookback_days = 7                             # how far back the first issue reaches
# list_id = "Weekly digest <weekly.example.org>"
# unsubscribe_mailto = "unsubscribe@example.org"
# templates_dir = "my-templates"                # your own email/digest.html and email/digest.txt
# logo_url = "https://example.org/logo.png"     # branding: an https image (alt text: the organisation)
# accent_colour = "#1f3a5f"                     # masthead and section rules; white text must stay readable
# footer_text = "A line for the footer."
# language = "en"                               # <html lang>; right-to-left for ar, fa, he, ur…
# DKIM signing: all three; the key file readable by its owner only (`digest check` shows the DNS record).
# dkim_domain = "example.org"
# dkim_selector = "digest2026"
# dkim_private_key_file = "/etc/digest/dkim.key"

# Storage: SQLite here, or postgresql+psycopg://user@host/dbname
# database_url = "sqlite:///subscribers.db"

# Sending: smtp://host:25, smtp+starttls://user@host:587 or smtps://user@host:465.
# The password comes from DIGEST_SMTP_PASSWORD or smtp_password_file (readable by its owner only).
smtp_url = "smtp://localhost:25"
# smtp_password_file = "/etc/digest/smtp-password"
# smtp_ca_file = "/etc/digest/private-ca.pem"
# smtp_timeout = 30
# send_rate = 0                                 # messages per second; 0 = as fast as the server takes
# send_rate_per_hour = 0                        # an hourly cap, spread evenly; 0 = none
# smtp_connections = 1                          # parallel SMTP connections (your relay's limit)
# retry_lifetime_hours = 72                     # how long temporary failures are retried
# retry_base_seconds = 60                       # first retry after this; doubles each time
# retry_wait_seconds = 300                      # how long one run waits for due retries
# smtp_down_seconds = 300                       # server unreachable this long: stop, exit 75
# lease_seconds = 60                            # a crashed worker's messages are re-sent after this

# The scheduled job (`digest send --scheduled`, from cron or a systemd timer)
# schedule = "weekly"                           # or "daily"; periods in `timezone`
# max_issue_age_hours = 24                      # an older unfinished issue is never sent late

# The key that signs unsubscribe links: DIGEST_SECRET_KEY, or this file (made by `digest init`).
# secret_key_file = "digest.key"

# Public web endpoints (`digest serve`): subscribe, confirm, unsubscribe, archive. Needs base_url.
# confirm_token_days = 7                        # how long a confirmation link works
# confirm_cooldown_minutes = 15                 # at most one confirmation email per address in this time
# preview_loopback = false                      # /preview for requests from this machine (not via a proxy)
# Staff preview through a proxy: set DIGEST_PREVIEW_TOKEN; /preview then asks for it as a password.
"""


@app.command()
def init(ctx: typer.Context) -> None:
    """Create (or upgrade) the database, a starter digest.toml and a secret key file.

    Safe to re-run: existing files are kept and the database is upgraded in place.

    Example: digest init
    """
    state = _state(ctx)
    config_path = Path(state.config_path or os.environ.get("DIGEST_CONFIG") or "digest.toml")
    if not config_path.exists():
        try:
            config_path.write_text(STARTER_CONFIG, encoding="utf-8")
        except OSError as exc:
            raise DigestError(f"cannot write {config_path}: {exc.strerror}") from None
        typer.echo(f"Created {config_path}: edit the newsletter name, addresses and smtp_url.")
    else:
        typer.echo(f"Kept {config_path}.")
    settings = state.settings
    if settings.secret_key:
        typer.echo("Secret key: from DIGEST_SECRET_KEY.")
    else:
        key_path = Path(settings.secret_key_file)
        if key_path.exists():
            settings.secret_key_bytes()  # checks its permissions
            typer.echo(f"Kept {key_path}.")
        else:
            import secrets

            try:
                fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except OSError as exc:
                raise DigestError(f"cannot create {key_path}: {exc.strerror}") from None
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(32) + "\n")
            typer.echo(f"Created {key_path} (readable by you only): it signs unsubscribe links.")
    engine = state.engine(check=False)
    from sqlalchemy.engine import make_url

    from digest.db import sqlite_path

    path = sqlite_path(settings.database_url)
    if path is not None and not path.parent.exists():
        raise DigestError(f"the folder {path.parent} does not exist", hint="Create it first.")
    keyring = settings.keyring()
    try:
        before, after = upgrade(engine, secret_key=keyring.current)
        from digest.subscribers import rekey_legacy_suppressions

        with session_scope(engine) as session:  # rows an earlier upgrade left unkeyed
            rekey_legacy_suppressions(session, keyring)
    except Exception as exc:
        import sqlalchemy as sa

        from digest.db import explain_database_error

        known = explain_database_error(exc, settings.database_url)
        if known is not None:
            raise known from None
        if isinstance(exc, sa.exc.OperationalError | sa.exc.DatabaseError):
            raise DigestError(
                f"cannot create the database: {getattr(exc, 'orig', exc)}",
                hint="Check DIGEST_DATABASE_URL / --db.",
            ) from None
        raise
    where = make_url(settings.database_url).render_as_string(hide_password=True)
    if before is None:
        typer.echo(f"Created the database {where} (schema {after}).")
    elif before != after:
        typer.echo(f"Upgraded the database {where} from schema {before} to {after}.")
    else:
        typer.echo(f"The database {where} is up to date (schema {after}).")


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print every setting, its value (secrets hidden) and where it came from.

    Example: digest config show
    """
    loaded = _state(ctx).loaded()
    if loaded.config_path:
        typer.echo(f"Config file: {loaded.config_path}")
    else:
        typer.echo("Config file: none (built-in defaults and DIGEST_* environment)")
    typer.echo(_table(["setting", "value", "from"], describe_settings(loaded)))
    for warning in key_warnings(loaded.settings):
        typer.echo(f"Warning: {warning}", err=True)


# subscribers -----------------------------------------------------------------------------


class NewStatus(StrEnum):
    active = "active"
    pending = "pending"


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


@subscribers_app.command("add")
def subscribers_add(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The address to add.")],
    name: Annotated[str | None, typer.Option(help="The person's name.")] = None,
    status: Annotated[
        NewStatus, typer.Option(help="active, or pending until they confirm.")
    ] = NewStatus.active,
) -> None:
    """Add one subscriber.

    Example: digest subscribers add ana@example.org --name "Ana Jones"
    """
    from digest.subscribers import add_subscriber

    state = _state(ctx)
    with session_scope(state.engine()) as session:
        sub = add_subscriber(
            session, email=email, keyring=state.settings.keyring(), name=name,
            status=SubscriberStatus(status.value),
            allow_special_use=state.settings.allow_special_use_domains,
        )  # fmt: skip
        typer.echo(f"Added {sub.email} ({sub.status}).")


@subscribers_app.command("list")
def subscribers_list(
    ctx: typer.Context,
    status: Annotated[SubscriberStatus | None, typer.Option(help="Only this status.")] = None,
    format: Annotated[
        OutputFormat, typer.Option("--format", help="table, csv or json.")
    ] = OutputFormat.table,
) -> None:
    """List subscribers.

    Example: digest subscribers list --status active --format csv
    """
    from digest.subscribers import EXPORT_HEADER, list_subscribers, subscriber_rows, write_csv

    state = _state(ctx)
    with session_scope(state.engine()) as session:
        subs = list_subscribers(session, status)
        if format == OutputFormat.csv:
            write_csv(subs, sys.stdout)
        elif format == OutputFormat.json:
            records = [dict(zip(EXPORT_HEADER, r, strict=True)) for r in subscriber_rows(subs)]
            typer.echo(json.dumps(records, indent=2, ensure_ascii=False))
        else:
            rows = [(s.email, s.name, s.status, _local(s.created_at, state.settings)) for s in subs]
            typer.echo(_table(["email", "name", "status", "added"], rows))
            typer.echo(f"{len(rows)} subscriber{'s' if len(rows) != 1 else ''}")


@subscribers_app.command("import")
def subscribers_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV with a header row: email (required), name.")],
    status: Annotated[
        NewStatus | None,
        typer.Option(
            help="Status of the new subscribers (default: each row's status column, else active;"
            " an unsubscribed or bounced row always stays so).",
            show_default=False,
        ),
    ] = None,
    send_confirmation: Annotated[
        bool,
        typer.Option(
            "--send-confirmation",
            help="Email each new pending subscriber a link to confirm (needs --status pending).",
        ),
    ] = False,
) -> None:
    """Import subscribers from a CSV file; report every rejected row.

    Valid rows are added and duplicates skipped; the exit code is 1 if any row was rejected.
    With --status pending --send-confirmation (a list whose consent must be re-confirmed),
    each new subscriber is emailed a link to confirm; exit code 75 if some emails did not go out.

    Example: digest subscribers import people.csv --status pending --send-confirmation
    """
    from digest.subscribers import import_subscribers

    if send_confirmation:
        from digest.cli_web import import_and_confirm

        import_and_confirm(ctx, file, status.value if status else None)
        return
    state = _state(ctx)
    with session_scope(state.engine()) as session:
        report = import_subscribers(
            session, file, keyring=state.settings.keyring(),
            status=SubscriberStatus(status.value) if status else None,
            allow_special_use=state.settings.allow_special_use_domains,
        )  # fmt: skip
    typer.echo(
        f"Imported {report.added} subscriber{'s' if report.added != 1 else ''}; "
        f"skipped {len(report.duplicates)} already on the list; rejected {len(report.rejected)}."
    )
    if state.verbose:
        for line, email in report.duplicates:
            typer.echo(f"  line {line}: {email} is already on the list")
    for line, email, new_status in report.suppressed:
        typer.echo(f"  line {line}: {email} is now {new_status}, as in the file")
    for line, reason in report.rejected:
        typer.echo(f"  line {line}: {reason}", err=True)
    if report.rejected:
        raise typer.Exit(EXIT_ERROR)


@subscribers_app.command("export")
def subscribers_export(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Where to write the CSV ('-' for standard output).")],
    status: Annotated[SubscriberStatus | None, typer.Option(help="Only this status.")] = None,
) -> None:
    """Export subscribers to CSV (spreadsheet-safe: formula-like cells are escaped).

    Example: digest subscribers export list.csv
    """
    from digest.subscribers import export_subscribers, list_subscribers, write_csv

    state = _state(ctx)
    with session_scope(state.engine()) as session:
        if str(file) == "-":
            write_csv(list_subscribers(session, status), sys.stdout)
            return
        n = export_subscribers(session, file, status)
    typer.echo(f"Exported {n} subscriber{'s' if n != 1 else ''} to {file}.")


@subscribers_app.command("unsubscribe")
def subscribers_unsubscribe(
    ctx: typer.Context, email: Annotated[str, typer.Argument(help="The address.")]
) -> None:
    """Unsubscribe an address now; an issue being sent skips them.

    Example: digest subscribers unsubscribe ana@example.org
    """
    from digest.subscribers import unsubscribe

    with session_scope(_state(ctx).engine()) as session:
        changed = unsubscribe(session, email)
    typer.echo(
        f"Unsubscribed {email.strip()}."
        if changed
        else f"{email.strip()} was already unsubscribed."
    )


@subscribers_app.command("confirm")
def subscribers_confirm(
    ctx: typer.Context, email: Annotated[str, typer.Argument(help="The address.")]
) -> None:
    """Make a pending subscriber active (for consent received another way).

    Example: digest subscribers confirm ana@example.org
    """
    from digest.subscribers import get_subscriber, set_status

    with session_scope(_state(ctx).engine()) as session:
        sub = get_subscriber(session, email)
        if sub.status != SubscriberStatus.pending:
            raise UsageError(f"{sub.email} is {sub.status}, not pending")
        set_status(session, sub, SubscriberStatus.active, source="cli", detail="confirmed by staff")
    typer.echo(f"Confirmed {sub.email}.")


@subscribers_app.command("remove")
def subscribers_remove(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The address.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase a person: their details and history go; only a hash stays, so they are not re-added.

    Example: digest subscribers remove ana@example.org --yes
    """
    from digest.subscribers import remove_subscriber

    if not yes and sys.stdin.isatty():
        typer.confirm(f"Erase {email.strip()} and their history?", abort=True)
    state = _state(ctx)
    with session_scope(state.engine()) as session:
        remove_subscriber(session, email, keyring=state.settings.keyring())
    typer.echo(f"Removed {email.strip()}.")


# news ------------------------------------------------------------------------------------


@news_app.command("add")
def news_add(
    ctx: typer.Context,
    title: Annotated[str, typer.Option(help="Headline (plain text).")],
    url: Annotated[str, typer.Option(help="Link to the full item (http or https).")],
    summary: Annotated[str, typer.Option(help="Summary: text or simple HTML (sanitised).")] = "",
    published: Annotated[
        str | None,
        typer.Option(
            help="When it was published, e.g. 2026-11-20 or 'Thurs 12th Sept 2013' (default: now)."
        ),
    ] = None,
    category: Annotated[str, typer.Option(help="Section of the digest, e.g. Procedures.")] = "",
) -> None:
    """Add a news item (adding the same link again updates it).

    Example: digest news add --title "New neglect toolkit" --url https://example.org/n/1 --category Procedures
    """
    from digest.news.items import ItemInput, upsert_item

    state = _state(ctx)
    when = _when(published, state.settings, "--published")
    with session_scope(state.engine()) as session:
        try:
            item, outcome = upsert_item(
                session,
                ItemInput(title=title, url=url, summary=summary, published=when, category=category),
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        verb = {"new": "Added", "updated": "Updated", "unchanged": "Unchanged:"}[outcome]
        typer.echo(f"{verb} {item.title!r} ({_local(item.published_at, state.settings)}).")


@news_app.command("list")
def news_list(
    ctx: typer.Context,
    since: Annotated[
        str | None, typer.Option(help="Only items published since WHEN (e.g. 7d, 2026-11-01).")
    ] = None,
    format: Annotated[
        OutputFormat, typer.Option("--format", help="table, csv or json.")
    ] = OutputFormat.table,
) -> None:
    """List news items, newest first.

    Example: digest news list --since 7d
    """
    from digest.news.items import list_items

    state = _state(ctx)
    with session_scope(state.engine()) as session:
        items = list_items(session, since=_when(since, state.settings, "--since"))
        records = [
            {
                "published": _local(i.published_at, state.settings),
                "category": i.category,
                "title": i.title,
                "url": i.url,
                "source": i.source,
            }
            for i in items
        ]
    if format == OutputFormat.json:
        typer.echo(json.dumps(records, indent=2, ensure_ascii=False))
    elif format == OutputFormat.csv:
        writer = csv.DictWriter(
            sys.stdout, fieldnames=["published", "category", "title", "url", "source"]
        )
        writer.writeheader()
        writer.writerows(records)
    else:
        rows = [(r["published"], r["category"], r["title"][:60], r["url"]) for r in records]
        typer.echo(_table(["published", "category", "title", "url"], rows))
        typer.echo(f"{len(rows)} item{'s' if len(rows) != 1 else ''}")


@news_app.command("import")
def news_import(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            help="A JSON list of items, a CSV with title,url,summary,published,category, or an RSS/Atom feed file or URL."
        ),
    ],
) -> None:
    """Import news items from a JSON or CSV file, or an RSS/Atom feed file or URL
    (re-importing updates, never duplicates).

    Example: digest news import items.json   or: digest news import https://example.org/rss.xml
    """
    from digest.news.items import import_items

    if import_feed_source(ctx, source):
        return
    file = Path(source)
    state = _state(ctx)
    with session_scope(state.engine()) as session:
        report = import_items(session, file, state.settings.tz)
    typer.echo(
        f"{report.new} new, {report.updated} updated, {report.unchanged} unchanged, "
        f"{len(report.rejected)} rejected."
    )
    for where, reason in report.rejected:
        typer.echo(f"  {where}: {reason}", err=True)
    if report.rejected:
        raise typer.Exit(EXIT_ERROR)


# preview / send --------------------------------------------------------------------------


@app.command()
def preview(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(
            help="Items published since WHEN (default: since the last issue; lookback_days back for the first)."
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Items published before WHEN (default: now).")
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Folder for digest.html, digest.txt, digest.eml and views.html.")
    ] = Path("preview"),
    open_: Annotated[bool, typer.Option("--open", help="Open the HTML in your browser.")] = False,
    fetch: Annotated[
        bool, typer.Option("--fetch", help="Fetch every news source first (see `digest feeds`).")
    ] = False,
    note: Annotated[
        Path | None, typer.Option("--note", help="An editor's note in Markdown, shown at the top.")
    ] = None,
    featured: Annotated[
        str | None,
        typer.Option("--featured", help="The link of one of the issue's items, shown first."),
    ] = None,
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
    from digest.issues import draft_issue, read_note
    from digest.send.safe import preview_files

    state = _state(ctx)
    settings = state.settings
    note_markdown = read_note(note) if note else None
    if fetch:
        fetch_before(ctx)
    with session_scope(state.engine()) as session:
        draft = draft_issue(
            session, settings, since=_when(since, settings, "--since"), until=_when(until, settings, "--until"),
            note_markdown=note_markdown, featured_url=featured,
        )  # fmt: skip
        if draft is None:
            typer.echo("No new items for the next issue; nothing to preview.")
            return
        paths = preview_files(settings, draft, out)
    typer.echo(f"Issue {draft.number}: {draft.rendered.subject}")
    typer.echo(
        f"{len(draft.items)} item{'s' if len(draft.items) != 1 else ''} in "
        f"{len(draft.rendered.sections)} section{'s' if len(draft.rendered.sections) != 1 else ''}."
    )
    html_kb = len(paths["html"].read_bytes()) / 1024
    typer.echo(
        f"Wrote {paths['html']} ({html_kb:.0f} KB), {paths['text']}, {paths['eml']} and {paths['views']}."
    )
    for line in draft.rendered.fit.describe() if draft.rendered.fit else []:
        typer.echo(f"Size guard: {line}")
    if open_:
        webbrowser.open(paths["html"].resolve().as_uri())
    if serve:
        from digest.render.views import VIEWS, serve_folder

        try:
            server = serve_folder(out, port)
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


@app.command()
def check(
    ctx: typer.Context,
    json_: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    note: Annotated[
        Path | None, typer.Option("--note", help="The editor's note you will send with.")
    ] = None,
    featured: Annotated[
        str | None, typer.Option("--featured", help="The featured item you will send with.")
    ] = None,
) -> None:
    """Lint the message the next send would produce; exit code 1 if anything must be fixed.

    Checks the headers, one-click unsubscribe and the unsubscribe link in both bodies, the
    HTML size against Gmail's clipping, images without alt text, links that are not absolute,
    leftover placeholders, DKIM alignment and signature, the postal address and base URL.
    Sends nothing and stores nothing.

    Example: digest check   or: digest check --json
    """
    from digest.check import check_next_send, format_report
    from digest.issues import read_note

    state = _state(ctx)
    note_markdown = read_note(note) if note else None
    with session_scope(state.engine()) as session:
        report = check_next_send(
            session, state.settings, note_markdown=note_markdown, featured_url=featured
        )
    if json_:
        typer.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        typer.echo(format_report(report))
    if not report.ok:
        raise typer.Exit(EXIT_ERROR)


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGINT/SIGTERM ask the send loop to stop after the message in flight."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        typer.echo("\nStopping after the message in flight (again to abort)…", err=True)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class _Progress:
    """A Rich progress bar on a terminal; a log line every few seconds otherwise."""

    def __init__(self, total: int, done: int, quiet: bool) -> None:
        self.total, self.done = total, done
        self.tty = sys.stderr.isatty()
        self.quiet = quiet
        self.last = time.monotonic()
        self.bar: Any = None
        if self.tty and not quiet:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("Sending"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"), TimeRemainingColumn(), transient=True,
            )  # fmt: skip
            self.bar.start()
            self.task = self.bar.add_task("send", total=total, completed=done, detail="")

    def __call__(self, p: Any) -> None:
        elapsed = max(time.monotonic() - p.started, 1e-6)
        detail = (
            f"sent {p.sent}, failed {p.failed}, deferred {p.deferred}, {p.sent / elapsed:.0f}/s"
        )
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done + p.processed, detail=detail)
        elif not self.quiet and time.monotonic() - self.last >= 5:
            self.last = time.monotonic()
            typer.echo(f"progress: {self.done + p.processed}/{self.total}; {detail}", err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@app.command()
def send(
    ctx: typer.Context,
    to: Annotated[
        list[str] | None,
        typer.Option(
            "--to", help="Send a test copy only to this address (repeatable); records nothing."
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Items published since WHEN (default: since the last issue).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Items published before WHEN (default: now).")
    ] = None,
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
    note: Annotated[
        Path | None,
        typer.Option("--note", help="An editor's note in Markdown, frozen into the new issue."),
    ] = None,
    featured: Annotated[
        str | None,
        typer.Option("--featured", help="The link of one of the new issue's items, shown first."),
    ] = None,
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
    """
    from digest.issues import draft_issue
    from digest.send.mailer import FileSender, SmtpSender
    from digest.send.safe import dry_run as do_dry_run
    from digest.send.safe import test_send

    state = _state(ctx)
    settings = state.settings
    engine = state.engine()
    since_at, until_at = _when(since, settings, "--since"), _when(until, settings, "--until")
    if fetch:
        fetch_before(ctx)

    if sum([bool(to or dry_run), scheduled, worker]) > 1:
        raise UsageError("--to/--dry-run, --scheduled and --worker cannot be combined")
    if force and not scheduled:
        raise UsageError("--force only applies to --scheduled")
    if (note or featured) and (scheduled or worker):
        raise UsageError(
            "--note and --featured shape a new issue: not with --scheduled or --worker"
        )
    from digest.issues import read_note

    note_markdown = read_note(note) if note else None
    if to or dry_run:
        with session_scope(engine) as session:
            draft = draft_issue(session, settings, since=since_at, until=until_at,
                                note_markdown=note_markdown, featured_url=featured)  # fmt: skip
            if draft is None:
                typer.echo("No new items for the next issue; nothing to send.")
                return
            if dry_run:
                n = do_dry_run(session, settings, draft, out, FileSender(out))
                typer.echo(
                    f"Dry run: wrote {n} message{'s' if n != 1 else ''} to {out}/; nothing was sent or recorded."
                )
                return
        sender = SmtpSender(settings.smtp)
        sender.connect()
        try:
            results = test_send(settings, draft, to or [], sender)
        finally:
            sender.close()
        failed = 0
        for address, result in results:
            ok = result.outcome == "sent"
            failed += not ok
            typer.echo(f"Test copy to {address}: {'sent' if ok else 'NOT sent'} ({result.reply})")
        if failed:
            raise typer.Exit(EXIT_ERROR)
        return

    from digest.send.job import send_next
    from digest.send.plan import SendPlan

    def confirm(plan: SendPlan) -> None:
        if not yes and not worker and sys.stdin.isatty():
            typer.confirm(f"Send to {plan.recipients} subscribers now?", abort=True)

    def progress(total: int, done: int) -> _Progress:
        bar = _Progress(total, done, quiet=False)
        bars.append(bar)
        return bar

    bars: list[_Progress] = []
    with _stop_on_signals() as stop:
        try:
            outcome = send_next(
                engine, settings, since=since_at, until=until_at, scheduled=scheduled,
                worker=worker, force=force, notify=typer.echo, confirm=confirm, stop=stop,
                progress=progress, note_markdown=note_markdown, featured_url=featured,
            )  # fmt: skip
        finally:
            for bar in bars:
                bar.close()
    if outcome is None:
        return
    c = outcome.counts
    typer.echo(
        f"Issue {outcome.issue_number}: {c['sent']} sent, {c['failed']} failed, "
        f"{c['deferred']} deferred, {c['skipped']} skipped, {c['queued'] + c['sending']} not yet tried."
    )
    if outcome.interrupted:
        raise Interrupted(
            "stopped before the issue was complete", hint="Run `digest send` again to resume it."
        )
    if outcome.finished:
        typer.echo(f"Issue {outcome.issue_number} is complete.")
        return
    if outcome.unavailable:
        raise SmtpUnavailable(
            f"stopped: {outcome.unavailable}",
            hint="The rest stays queued; run `digest send` again when the server is back.",
        )
    if outcome.next_retry_at is None:
        # nothing deferred: the rest is with other workers, which finish the issue
        typer.echo(
            f"Issue {outcome.issue_number}: the remaining deliveries are with other workers."
        )
        return
    when = _local(outcome.next_retry_at, settings)
    typer.echo(
        f"Some deliveries failed temporarily; run `digest send` again after {when} to retry them.",
        err=True,
    )
    raise typer.Exit(EXIT_TEMPFAIL)


# issues ----------------------------------------------------------------------------------


@issues_app.command("list")
def issues_list(ctx: typer.Context) -> None:
    """List issues, newest first, with delivery counts.

    Example: digest issues list
    """
    from digest.issues import list_issues

    state = _state(ctx)
    with session_scope(state.engine()) as session:
        rows = [
            (i.number, _local(i.created_at, state.settings), i.status, n_items,
             c["sent"], c["failed"], c["deferred"], c["queued"] + c["sending"], c["skipped"], i.subject[:50])
            for i, c, n_items in list_issues(session)
        ]  # fmt: skip
    if not rows:
        typer.echo("No issues yet. `digest preview` shows what the first would contain.")
        return
    typer.echo(
        _table(
            [
                "#",
                "created",
                "status",
                "items",
                "sent",
                "failed",
                "deferred",
                "queued",
                "skipped",
                "subject",
            ],
            rows,
        )
    )


@issues_app.command("show")
def issues_show(
    ctx: typer.Context, number: Annotated[int, typer.Argument(help="The issue number.")]
) -> None:
    """Show one issue: its items, delivery counts, and failed or deferred addresses with the
    server's last reply.

    Example: digest issues show 3
    """
    from digest.issues import delivery_counts, get_issue, issue_items, problem_deliveries

    state = _state(ctx)
    s = state.settings
    with session_scope(state.engine()) as session:
        issue = get_issue(session, number)
        counts = delivery_counts(session, issue.id or 0)
        items = issue_items(session, issue.id or 0)
        problems = problem_deliveries(session, issue.id or 0)
    typer.echo(f"Issue {issue.number}: {issue.subject}")
    typer.echo(
        f"Status: {issue.status}; created {_local(issue.created_at, s)}; "
        f"completed {_local(issue.completed_at, s)}"
    )
    typer.echo(
        f"Period: {_local(issue.period_start, s)} to {_local(issue.period_end, s)} ({s.timezone})"
    )
    typer.echo("Deliveries: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    typer.echo(f"\nItems ({len(items)}):")
    for it in items:
        typer.echo(f"  {it.position}. [{it.category or 'News'}] {it.title}\n     {it.url}")
    if problems:
        typer.echo("\nFailed and deferred:")
        typer.echo(_table(["address", "status", "attempts", "last reply"], problems))


@issues_app.command("retry")
def issues_retry(
    ctx: typer.Context, number: Annotated[int, typer.Argument(help="The issue number.")]
) -> None:
    """Queue an issue's deferred and failed deliveries again, on purpose; `digest send` then
    sends them (with the same Message-IDs).

    Example: digest issues retry 3 && digest send
    """
    from digest.issues import retry_issue

    with session_scope(_state(ctx).engine()) as session:
        n = retry_issue(session, number)
    if n:
        typer.echo(
            f"Queued {n} deliver{'ies' if n != 1 else 'y'} of issue {number} again; run `digest send` to send them."
        )
    else:
        typer.echo(f"Issue {number} has no deferred or failed deliveries.")


@issues_app.command("cancel")
def issues_cancel(
    ctx: typer.Context,
    number: Annotated[int, typer.Argument(help="The issue number.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Stop an unfinished issue: its deliveries not yet made are skipped and never sent.

    Use it for a stale issue that `digest send --scheduled` will not send late.

    Example: digest issues cancel 3 --yes
    """
    from digest.issues import cancel_issue

    if not yes and sys.stdin.isatty():
        typer.confirm(f"Cancel the rest of issue {number}?", abort=True)
    with session_scope(_state(ctx).engine()) as session:
        n = cancel_issue(session, number)
    typer.echo(f"Cancelled issue {number}: {n} deliver{'ies' if n != 1 else 'y'} will not be sent.")


# demo ------------------------------------------------------------------------------------


@app.command()
def demo(
    dir: Annotated[
        Path, typer.Option("--dir", help="Workspace folder (re-created on each run).")
    ] = Path("digest-demo"),
) -> None:
    """Run the whole weekly job offline on built-in sample data: database, news items and
    subscribers, a local SMTP server writing a Maildir, then preview and send.

    Example: digest demo --dir /tmp/digest-demo
    """
    from digest.demo import run_demo

    result = run_demo(dir, echo=typer.echo)
    typer.echo("")
    typer.echo(f"Preview:   {result.preview_html}")
    typer.echo(f"Maildir:   {result.maildir} ({result.delivered} messages)")
    typer.echo(f"Database:  {result.database}")
    typer.echo(f"Open the preview in a browser, or read a message: {result.sample_message}")


from digest.cli_web import register as _register_web  # noqa: E402  (serve, purge-pending)

_register_web(app, subscribers_app)


def main() -> None:
    """Console entry point."""
    app()
