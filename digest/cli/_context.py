"""What the commands share: the State behind every command (settings and engine, made on first
use), option parsing, tables and local times, and the send's signal handling and progress."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from digest.config import Settings
from digest.config_load import LoadedSettings, load_settings
from digest.dates import parse_when
from digest.db import Engine, check_schema, make_engine
from digest.errors import EXIT_ERROR, UsageError

if TYPE_CHECKING:
    from digest.issues.select import NextIssue
    from digest.send.outcome import SendProgress
    from digest.send.plan import SendPlan


@dataclass
class State:
    """The global options, and the settings and engine made from them on first use."""

    config_path: str | None = None
    db: str | None = None
    verbose: bool = False
    _loaded: LoadedSettings | None = None
    _engine: Engine | None = None

    @property
    def overrides(self) -> dict[str, Any]:
        """Command-line options that win over the file and the environment."""
        return {"database_url": self.db}

    def loaded(self) -> LoadedSettings:
        if self._loaded is None:
            self._loaded = load_settings(self.config_path, overrides=self.overrides)
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


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    assert isinstance(obj, State)
    return obj


def sub_app(help_text: str | None = None) -> typer.Typer:
    """A group of commands (`digest subscribers …`), or with no help a set of commands that
    the app takes in as its own (`digest send`)."""
    return typer.Typer(
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,  # locals would include the SMTP password
        rich_markup_mode=None,
    )


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


# Arguments and options that several commands take, defined once.
Address = Annotated[str, typer.Argument(help="The address.")]
IssueNumber = Annotated[int, typer.Argument(help="The issue number.")]
Format = Annotated[OutputFormat, typer.Option("--format", help="table, csv or json.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
By = Annotated[
    str | None,
    typer.Option(
        "--by", help="Who decides (default: your user name on this machine), for the record."
    ),
]
# A news item's (news add, news edit, news import-page)
Summary = Annotated[
    str | None, typer.Option(help="Summary: text or simple HTML (sanitised); '' for none.")
]
Category = Annotated[
    str | None, typer.Option(help="Section of the digest, e.g. Procedures; '' for none.")
]
Published = Annotated[
    str | None,
    typer.Option(help="When it was published, e.g. 2026-11-20 or 'Thurs 12th Sept 2013'."),
]
# The next issue's (preview, send; see next_issue)
Since = Annotated[
    str | None,
    typer.Option(
        help="Items published since WHEN (default: since the last issue; lookback_days back for the first)."
    ),
]
Until = Annotated[str | None, typer.Option(help="Items published before WHEN (default: now).")]
Note = Annotated[
    Path | None,
    typer.Option("--note", help="An editor's note in Markdown, shown at the top of the issue."),
]
Featured = Annotated[
    str | None,
    typer.Option("--featured", help="The link of one of the issue's items, shown first."),
]


def when(value: str | None, settings: Settings, option: str) -> datetime | None:
    """An option's date (`--since 7d`) in the newsletter's time zone; None when not given."""
    if value is None:
        return None
    try:
        return parse_when(value, settings.tz)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def next_issue(
    settings: Settings,
    *,
    since: str | None = None,
    until: str | None = None,
    note: Path | None = None,
    featured: str | None = None,
) -> NextIssue:
    """What the options say about the next issue: its period, note and featured item."""
    from digest.issues.select import NextIssue, read_note

    return NextIssue(
        since=when(since, settings, "--since"), until=when(until, settings, "--until"),
        note_markdown=read_note(note) if note else None, featured_url=featured,
    )  # fmt: skip


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def local_time(moment: datetime | None, settings: Settings) -> str:
    return moment.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M") if moment else "-"


def echo_rejected(rejected: Sequence[tuple[object, str]], *, where: str = "") -> None:
    """Each rejected row of an import and why, on stderr (`  line 3: invalid address …`)."""
    for at, reason in rejected:
        typer.echo(f"  {where}{at}: {reason}", err=True)


def exit_if_rejected(rejected: Sequence[tuple[object, str]], *, where: str = "") -> None:
    """The rejected rows (see echo_rejected), then exit code 1 if there were any."""
    echo_rejected(rejected, where=where)
    if rejected:
        raise typer.Exit(EXIT_ERROR)


def confirm_on_terminal(question: str, *, yes: bool) -> None:
    """Ask before a destructive step when a person is at a terminal (and did not say --yes)."""
    if not yes and sys.stdin.isatty():
        typer.confirm(question, abort=True)


# The send's plumbing ----------------------------------------------------------------------


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
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


class Progress:
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
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar

            self.bar = Bar(
                TextColumn("Sending"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"), TimeRemainingColumn(), transient=True,
            )  # fmt: skip
            self.bar.start()
            self.task = self.bar.add_task("send", total=total, completed=done, detail="")

    def __call__(self, p: SendProgress) -> None:
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


@dataclass
class SendDisplay:
    """What `send_next` takes from a terminal: a stop flag, a confirmation and a progress bar."""

    stop: threading.Event
    ask: bool
    bars: list[Progress] = field(default_factory=list)

    def confirm(self, plan: SendPlan) -> None:
        if self.ask and sys.stdin.isatty():
            typer.confirm(f"Send to {plan.recipients} subscribers now?", abort=True)

    def progress(self, total: int, done: int) -> Callable[[SendProgress], None]:
        bar = Progress(total, done, quiet=False)
        self.bars.append(bar)
        return bar


@contextmanager
def send_display(*, ask: bool) -> Iterator[SendDisplay]:
    """Signals stop the send gracefully while it runs; the progress bars go when it ends."""
    with stop_on_signals() as stop:
        display = SendDisplay(stop, ask)
        try:
            yield display
        finally:
            for bar in display.bars:
                bar.close()
