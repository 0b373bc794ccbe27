"""`digest feeds …`, `digest news import-page`, and the feed side of `news import` and `--fetch`.

Thin like cli.py: parse, call one library function, present. Helpers of cli.py are imported
inside the commands, so the two modules can import each other in any order.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from digest.errors import DigestError

if TYPE_CHECKING:
    from digest.cli import State
    from digest.news.fetch import FetchLimits
    from digest.news.sources import SourceResult

feeds_app = typer.Typer(
    help="News sources: RSS and Atom feeds fetched before each issue.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)


def _state(ctx: typer.Context) -> State:
    from digest.cli import _state as state

    return state(ctx)


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


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
    from digest.db import session_scope
    from digest.news.sources import add_source

    state = _state(ctx)
    with session_scope(state.engine()) as session:
        result = add_source(
            session, url=url, name=name, category=category, limits=fetch_limits(state)
        )
    typer.echo(
        f"Added source {result.name!r}: {result.version} feed {result.feed_title!r}, "
        f"{_plural(result.entries, 'item')} ({result.report.describe()})."
    )
    _echo_problems(result, verbose=state.verbose)


@feeds_app.command("list")
def feeds_list(ctx: typer.Context) -> None:
    """List the sources: status and time of the last fetch, items stored, failures in a row.

    Example: digest feeds list
    """
    from digest.cli import _local, _table
    from digest.db import session_scope
    from digest.news.sources import list_sources

    state = _state(ctx)
    with session_scope(state.engine()) as session:
        rows = list_sources(session)
    if not rows:
        typer.echo("No sources yet. Add one with `digest feeds add URL`.")
        return
    table = [
        (s.name, s.category or "-", s.last_status, _local(s.last_fetch_at, state.settings), n,
         s.consecutive_failures, s.url)
        for s, n in rows
    ]  # fmt: skip
    typer.echo(
        _table(["name", "category", "status", "last fetch", "items", "failures", "url"], table)
    )
    for s, _n in rows:
        if s.last_error:
            typer.echo(f"{s.name}: {s.last_error}")


@feeds_app.command("remove")
def feeds_remove(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="The source's name or URL.")],
) -> None:
    """Stop fetching a source. The items it already brought stay.

    Example: digest feeds remove "Procedures News"
    """
    from digest.db import session_scope
    from digest.news.sources import remove_source

    with session_scope(_state(ctx).engine()) as session:
        removed, kept = remove_source(session, source)
    typer.echo(
        f"Removed source {removed.name!r}; its {_plural(kept, 'item')} stay in the news list."
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
        typer.Option("--verbose", "-v", help="A line for every source, including unchanged ones."),
    ] = False,
) -> None:
    """Fetch every source (or those named) and store new and changed items.

    Quiet unless something is new or wrong, so it suits cron. The exit code is 1 if any
    source failed; the others are still fetched, and a failure never changes stored items.

    Example: digest feeds fetch
    """
    state = _state(ctx)
    results = fetch_all(state, names=names or [], verbose=verbose or state.verbose)
    if results is None:
        typer.echo("No sources yet. Add one with `digest feeds add URL`.")
        return
    failed = [r for r in results if r.failed]
    if failed:
        raise DigestError(
            f"{len(failed)} of {_plural(len(results), 'source')} failed: "
            + ", ".join(r.name for r in failed)
            + ("; the others were fetched" if len(failed) < len(results) else ""),
            hint="`digest feeds list` shows each source's last error; "
            "stored items were not changed.",
        )


def fetch_all(state: State, *, names: list[str], verbose: bool) -> list[SourceResult] | None:
    """Fetch sources and print a line per noteworthy source (every source when verbose).

    Returns None when there are no sources at all. Failures are printed, not raised.
    """
    from digest.db import session_scope
    from digest.news.sources import fetch_sources

    with session_scope(state.engine()) as session:
        results = fetch_sources(session, names=names, limits=fetch_limits(state))
    if not results:
        return None
    for r in results:
        if r.failed:
            failures = (
                ""
                if r.consecutive_failures < 2
                else f" ({r.consecutive_failures} failures in a row)"
            )
            typer.echo(f"{r.name}: FAILED: {r.error}{failures}", err=True)
            if verbose and r.hint:
                typer.echo(f"  Hint: {r.hint}", err=True)
        elif r.status == "not_modified":
            if verbose:
                typer.echo(f"{r.name}: not modified since the last fetch.")
        elif verbose or r.noteworthy:
            typer.echo(f"{r.name}: {r.report.describe()}.")
        _echo_problems(r, verbose=verbose)
    if verbose:
        ok = sum(not r.failed for r in results)
        new = sum(r.report.new for r in results)
        typer.echo(
            f"Fetched {ok} of {_plural(len(results), 'source')}; {_plural(new, 'new item')}."
        )
    return results


def _echo_problems(result: SourceResult, *, verbose: bool) -> None:
    for warning in result.warnings:
        typer.echo(f"  Warning: {warning}", err=True)
    if verbose:
        for where, reason in result.report.skipped:
            typer.echo(f"  {where}: skipped, {reason}", err=True)


def fetch_limits(state: State) -> FetchLimits:
    from digest.news.fetch import FetchLimits

    return FetchLimits(allow_private=state.settings.allow_private_feeds)


def fetch_before(ctx: typer.Context) -> None:
    """`send --fetch` / `preview --fetch`: fetch all sources; a failing source only warns."""
    state = _state(ctx)
    results = fetch_all(state, names=[], verbose=state.verbose)
    failed = [r for r in results or [] if r.failed]
    if failed:
        typer.echo(
            f"Warning: {len(failed)} of {_plural(len(results or []), 'source')} could not be "
            "fetched; going on with the items already stored.",
            err=True,
        )


def import_feed_source(ctx: typer.Context, source: str) -> bool:
    """`news import` for a feed URL or an RSS/Atom file. False when `source` is neither."""
    from digest.db import session_scope
    from digest.news.feeds import import_feed_file, import_feed_url, looks_like_feed

    is_url = source.strip().lower().startswith(("http://", "https://"))
    path = Path(source)
    if not is_url and not (path.is_file() and looks_like_feed(path)):
        return False
    state = _state(ctx)
    with session_scope(state.engine()) as session:
        done = (
            import_feed_url(session, source, limits=fetch_limits(state))
            if is_url
            else import_feed_file(session, path)
        )
    feed, report = done.feed, done.report
    typer.echo(f"{feed.version} feed {feed.title!r}: {report.describe()}.")
    for warning in feed.warnings:
        typer.echo(f"  Warning: {warning}", err=True)
    for where, reason in report.skipped:
        typer.echo(f"  {where}: skipped, {reason}", err=True)
    return True


def news_import_page(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="The article page's address (http or https).")],
    category: Annotated[str, typer.Option(help="Section of the digest, e.g. Procedures.")] = "",
    title: Annotated[
        str | None, typer.Option(help="Use this headline instead of the extracted one.")
    ] = None,
    published: Annotated[
        str | None,
        typer.Option(help="Use this date instead of the extracted one, e.g. 2013-09-12."),
    ] = None,
) -> None:
    """Store one article page as a news item (for sites with no feed), and show what was extracted.

    The title, date, main text and canonical link are taken from the page; importing the
    same page again updates the item.

    Example: digest news import-page https://example.org/news/item.aspx?id=92 --category Procedures
    """
    from digest.cli import _when
    from digest.dates import human_date
    from digest.db import session_scope
    from digest.news.pages import import_page

    state = _state(ctx)
    settings = state.settings
    when = _when(published, settings, "--published")
    with session_scope(state.engine()) as session:
        done = import_page(
            session, url, tz=settings.tz, category=category, title=title, published=when,
            limits=fetch_limits(state),
        )  # fmt: skip
    page, item = done.page, done.item
    verb = {"new": "Added", "updated": "Updated", "unchanged": "Unchanged:"}[done.outcome]
    typer.echo(f"{verb} {item.title!r}")
    typer.echo(f"  Link:      {item.url}{' (the page’s canonical link)' if page.canonical else ''}")
    if page.published is not None:
        typer.echo(
            f"  Published: {human_date(page.published, settings.tz)} (from {page.date_from})"
        )
    else:
        typer.echo(
            f"  Published: {human_date(item.published_at, settings.tz)} "
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
