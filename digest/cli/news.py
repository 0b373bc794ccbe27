"""`digest news …` (add, list, import, import-page; edit and the rest in news_edit.py) and `digest feeds …` (the news sources),
and the fetch before `send --fetch` / `preview --fetch`."""

from __future__ import annotations

import csv
import json
import sys
import textwrap
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from digest.cli._context import (
    Category,
    Format,
    OutputFormat,
    Published,
    State,
    Summary,
    exit_if_rejected,
    local_time,
    state,
    sub_app,
    table,
    when,
)
from digest.db import session_scope
from digest.errors import DigestError, UsageError
from digest.text import plural

if TYPE_CHECKING:
    from digest.news.fetch import FetchLimits
    from digest.news.sources import SourceResult

news_app = sub_app("Add, list and import news items.")
feeds_app = sub_app("News sources: RSS and Atom feeds fetched before each issue.")

_VERB = {"new": "Added", "updated": "Updated", "unchanged": "Unchanged:"}


class ItemStatusChoice(StrEnum):
    next = "next"
    held = "held"
    removed = "removed"
    sent = "sent"
    too_old = "too-old"
    later = "later"


@news_app.command("add")
def news_add(
    ctx: typer.Context,
    title: Annotated[str, typer.Option(help="Headline (plain text).")],
    url: Annotated[str, typer.Option(help="Link to the full item (http or https).")],
    summary: Summary = None,
    published: Published = None,
    category: Category = None,
) -> None:
    """Add a news item (dated now unless --published says when). Adding the same link again
    updates it: the options given change, the others keep what is stored, and it says what
    changed.

    Example: digest news add --title "New neglect toolkit" --url https://example.org/n/1 --category Procedures
    """
    from digest.news.items import ItemInput, save_item

    s = state(ctx)
    given = {"title", "url"} | {
        name for name, v in (("summary", summary), ("published", published),
                             ("category", category)) if v is not None
    }  # fmt: skip
    item_input = ItemInput(
        title=title, url=url, summary=summary or "", category=category or "",
        published=when(published, s.settings, "--published"),
    )  # fmt: skip
    with session_scope(s.engine()) as session:
        try:
            saved = save_item(session, item_input, given=given, by_staff=True)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        at = local_time(saved.item.published_at, s.settings)
        what = f": {', '.join(saved.changed)} changed" if saved.changed else ""
        typer.echo(f"{_VERB[saved.outcome]} {saved.item.title!r} ({at}){what}.")
        if saved.item.control in ("held", "removed"):
            undo = "release" if saved.item.control == "held" else "restore"
            typer.echo(f"Note: item {saved.item.id} is {saved.item.control}: no issue takes it "
                       f"until `digest news {undo} {saved.item.id}`.")  # fmt: skip


@news_app.command("list")
def news_list(
    ctx: typer.Context,
    since: Annotated[
        str | None, typer.Option(help="Only items published since WHEN (e.g. 7d, 2026-11-01).")
    ] = None,
    status: Annotated[
        ItemStatusChoice | None,
        typer.Option(
            help="Only items with this status (next, held, removed, sent, too-old, later)."
        ),
    ] = None,
    format: Format = OutputFormat.table,
) -> None:
    """List news items, newest first, with where each stands for the next issue: next, held,
    removed, sent in #N, too old (before the next issue's period) or later (dated ahead).

    Example: digest news list --status next
    """
    from digest.news.status import RECORD_FIELDS, item_statuses, status_records

    s = state(ctx)
    with session_scope(s.engine()) as session:
        rows = item_statuses(
            session, s.settings, since=when(since, s.settings, "--since"),
            only=status.value if status else None,
        )  # fmt: skip
        records = status_records(rows, s.settings.tz)
    if format == OutputFormat.json:
        typer.echo(json.dumps(records, indent=2, ensure_ascii=False))
    elif format == OutputFormat.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=RECORD_FIELDS)
        writer.writeheader()
        writer.writerows(records)
    else:
        cells = [(r["id"], r["status"], r["published"], r["category"] or "-",
                  str(r["title"])[:60], r["url"] or "-") for r in records]  # fmt: skip
        typer.echo(table(["id", "status", "published", "category", "title", "url"], cells))
        typer.echo(plural(len(cells), "item"))


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
    from digest.news.feeds import FeedImport, import_news

    s = state(ctx)
    with session_scope(s.engine()) as session:
        done = import_news(session, source, s.settings.tz, limits=fetch_limits(s))
    if isinstance(done, FeedImport):
        typer.echo(f"{done.feed.version} feed {done.feed.title!r}: {done.report.describe()}.")
        _echo_skipped(done.feed.warnings, done.report.skipped)
        return
    typer.echo(
        f"{done.new} new, {done.updated} updated, {done.unchanged} unchanged, "
        f"{len(done.rejected)} rejected."
    )
    exit_if_rejected(done.rejected)


@news_app.command("import-page")
def news_import_page(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="The article page's address (http or https).")],
    category: Category = None,
    title: Annotated[
        str | None, typer.Option(help="Use this headline instead of the extracted one.")
    ] = None,
    published: Published = None,
) -> None:
    """Store one article page as a news item (for sites with no feed), and show what was extracted.

    The title, date, main text and canonical link are taken from the page (--title and
    --published say otherwise); importing the same page again updates the item.

    Example: digest news import-page https://example.org/news/item.aspx?id=92 --category Procedures
    """
    from digest.dates import human_date
    from digest.news.pages import PageChoices, import_page

    s = state(ctx)
    tz = s.settings.tz
    moment = when(published, s.settings, "--published")
    chosen = PageChoices(category=category or "", title=title, published=moment)
    with session_scope(s.engine()) as session:
        done = import_page(session, url, chosen, tz=tz, limits=fetch_limits(s))
    page, item = done.page, done.item
    typer.echo(f"{_VERB[done.outcome]} {item.title!r}")
    typer.echo(f"  Link:      {item.url}{' (the page’s canonical link)' if page.canonical else ''}")
    if page.published is not None:
        typer.echo(f"  Published: {human_date(page.published, tz)} (from {page.date_from})")
    else:
        typer.echo(
            f"  Published: {human_date(item.published_at, tz)} "
            "(no date found on the page: the time it was imported; set one with --published)"
        )
    typer.echo(f"  Category:  {item.category or '-'}")
    summary = (
        textwrap.shorten(item.summary_text, width=300, placeholder=" …")
        if item.summary_text
        else "-"
    )
    typer.echo(
        textwrap.fill(summary, width=88, initial_indent="  Summary:   ", subsequent_indent=" " * 13)
    )
    if not page.text:
        typer.echo("  Warning: the page had no main text beyond its title.", err=True)


# feeds -----------------------------------------------------------------------------------


@feeds_app.command("add")
def feeds_add(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="The feed's address (http or https).")],
    name: Annotated[
        str | None, typer.Option(help="A short name (default: the feed's title).")
    ] = None,
    category: Annotated[
        str, typer.Option(help="Section of the digest for its items, e.g. Procedures.")
    ] = "",
) -> None:
    """Add an RSS or Atom feed: it is fetched once to check it, and its items are stored.

    Example: digest feeds add https://example.org/news/rss.xml --name "Procedures News"
    """
    from digest.news.sources import add_source

    s = state(ctx)
    with session_scope(s.engine()) as session:
        result = add_source(session, url=url, name=name, category=category, limits=fetch_limits(s))
    typer.echo(
        f"Added source {result.name!r}: {result.version} feed {result.feed_title!r}, "
        f"{plural(result.entries, 'item')} ({result.report.describe()})."
    )
    _echo_skipped(result.warnings, result.report.skipped if s.verbose else [])


@feeds_app.command("list")
def feeds_list(ctx: typer.Context) -> None:
    """List the sources: status and time of the last fetch, items stored, failures in a row.

    Example: digest feeds list
    """
    from digest.news.sources import list_sources

    s = state(ctx)
    with session_scope(s.engine()) as session:
        rows = list_sources(session)
    if not rows:
        typer.echo("No sources yet. Add one with `digest feeds add URL`.")
        return
    cells = [
        (src.name, src.category or "-", src.last_status, local_time(src.last_fetch_at, s.settings),
         n, src.consecutive_failures, src.url)
        for src, n in rows
    ]  # fmt: skip
    typer.echo(
        table(["name", "category", "status", "last fetch", "items", "failures", "url"], cells)
    )
    for src, _n in rows:
        if src.last_error:
            typer.echo(f"{src.name}: {src.last_error}")


@feeds_app.command("remove")
def feeds_remove(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="The source's name or URL.")],
) -> None:
    """Stop fetching a source. The items it already brought stay.

    Example: digest feeds remove "Procedures News"
    """
    from digest.news.sources import remove_source

    with session_scope(state(ctx).engine()) as session:
        removed, kept = remove_source(session, source)
    typer.echo(
        f"Removed source {removed.name!r}; its {plural(kept, 'item')} stay in the news list."
    )


@feeds_app.command("fetch")
def feeds_fetch(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Only these sources (names or URLs).", show_default=False),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Also each failure's hint, and a total."),
    ] = False,
) -> None:
    """Fetch every source (or those named) and store new and changed items.

    One line per source: new, updated and unchanged items, entries skipped (each with the
    reason), not modified since the last fetch, or failed. The exit code is 1 if any source
    failed; the others are still fetched, and a failure never changes stored items.

    Example: digest feeds fetch
    """
    s = state(ctx)
    results = _fetch(s, names=names or [], verbose=verbose or s.verbose, every=True)
    if not results:
        typer.echo("No sources yet. Add one with `digest feeds add URL`.")
        return
    failed = [r for r in results if r.failed]
    if failed:
        raise DigestError(
            f"{len(failed)} of {plural(len(results), 'source')} failed: "
            + ", ".join(r.name for r in failed)
            + ("; the others were fetched" if len(failed) < len(results) else ""),
            hint="`digest feeds list` shows each source's last error; "
            "stored items were not changed.",
        )


def fetch_limits(s: State) -> FetchLimits:
    """The limits of a fetch, with what the settings say about private addresses."""
    from digest.news.fetch import FetchLimits

    return FetchLimits(allow_private=s.settings.allow_private_feeds)


def fetch_before(s: State) -> None:
    """`send --fetch` / `preview --fetch`: fetch all sources; a failing source only warns."""
    results = _fetch(s, names=[], verbose=s.verbose)
    failed = [r for r in results if r.failed]
    if failed:
        typer.echo(
            f"Warning: {len(failed)} of {plural(len(results), 'source')} could not be "
            "fetched; going on with the items already stored.",
            err=True,
        )


def _fetch(s: State, *, names: list[str], verbose: bool, every: bool = False) -> list[SourceResult]:
    """Fetch sources (a failure is in its result, never raised) and print a line for each
    noteworthy one (every one when `every` or verbose), with the entries skipped and why."""
    from digest.news.sources import fetch_sources

    with session_scope(s.engine()) as session:
        results = fetch_sources(session, names=names, limits=fetch_limits(s))
    for r in results:
        if r.failed:
            again = f" ({r.consecutive_failures} failures in a row)"
            typer.echo(f"{r.name}: FAILED: {r.error}{again if r.consecutive_failures > 1 else ''}",
                       err=True)  # fmt: skip
            if verbose and r.hint:
                typer.echo(f"  Hint: {r.hint}", err=True)
        elif r.status == "not_modified":
            if verbose or every:
                typer.echo(f"{r.name}: not modified since the last fetch.")
        elif verbose or every or r.noteworthy:
            typer.echo(f"{r.name}: {r.report.describe()}.")
        _echo_skipped(r.warnings, r.report.skipped if verbose or every else [])
    if verbose and results:
        ok = sum(not r.failed for r in results)
        new = sum(r.report.new for r in results)
        typer.echo(f"Fetched {ok} of {plural(len(results), 'source')}; {plural(new, 'new item')}.")
    return results


def _echo_skipped(warnings: Sequence[str], skipped: Sequence[tuple[str, str]]) -> None:
    for warning in warnings:
        typer.echo(f"  Warning: {warning}", err=True)
    for where, reason in skipped:
        typer.echo(f"  {where}: skipped, {reason}", err=True)
