"""`digest news edit`, `remove`/`restore`, `hold`/`release` and `include`: what staff decide
about a stored item before it goes out (digest/news/control.py does it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from digest.cli._context import (
    By,
    Category,
    Published,
    State,
    Summary,
    local_time,
    state,
    sub_app,
    when,
)
from digest.db import session_scope

if TYPE_CHECKING:
    from digest.news.control import Action, Controlled
    from digest.news.status import ItemStatus

commands = sub_app()

ItemRef = Annotated[
    str,
    typer.Argument(
        metavar="ID|URL", help="The item: its id (as `digest news list` shows it) or its link."
    ),
]
Reason = Annotated[str, typer.Option("--reason", help="Why, for the record.")]

_AFTER = {
    "remove": "kept out of every future issue",
    "hold": "kept out of issues until released",
    "include": "in the next issue whatever its date; its date stays as it is",
}
# after release or restore: where the item stands now
_NOW = {
    "next": "the next issue takes it",
    "too-old": "its date is before the next issue's period, so no issue takes it "
    "(`digest news include {id}` does)",
    "later": "an issue takes it once its date is in the period",
    "sent": "it went out already",
    "held": "held",
    "removed": "removed",
}

_ALREADY = {
    "remove": "is removed already",
    "restore": "is not removed",
    "hold": "is held already",
    "release": "is neither held nor included",
    "include": "is included already",
}


@commands.command("edit")
def news_edit(
    ctx: typer.Context,
    ref: ItemRef,
    title: Annotated[str | None, typer.Option(help="A new headline.")] = None,
    url: Annotated[str | None, typer.Option(help="A new link (http or https).")] = None,
    summary: Summary = None,
    category: Category = None,
    published: Published = None,
) -> None:
    """Correct a stored item: only the options given change. Edited fields stay as staff
    left them when the item's feed is fetched again. An issue already sent keeps its copy.

    Example: digest news edit 12 --title "Neglect toolkit (2027 edition)" --category Training
    """
    from digest.news.control import ItemChanges, edit_item

    s = state(ctx)
    changes = ItemChanges(
        title=title, url=url, summary=summary, category=category,
        published=when(published, s.settings, "--published"),
    )  # fmt: skip
    with session_scope(s.engine()) as session:
        saved = edit_item(session, ref, changes)
        item = saved.item
        at = local_time(item.published_at, s.settings)
        if saved.changed:
            typer.echo(f"Updated item {item.id} {item.title!r} ({at}): "
                       f"{', '.join(saved.changed)} changed.")  # fmt: skip
        else:
            typer.echo(f"Unchanged: item {item.id} {item.title!r} ({at}) already says that.")


def _control(s: State, ref: str, action: Action, by: str | None, reason: str = "") -> None:
    """Apply one decision and say what it means for the next issue."""
    from digest.news.control import Decision
    from digest.news.status import decide

    with session_scope(s.engine()) as session:
        done, now = decide(session, s.settings, ref, Decision(action, by, reason))
        _echo_controlled(s, done, action, now)


def _echo_controlled(s: State, done: Controlled, action: str, now: ItemStatus) -> None:
    item = done.item
    name = f"item {item.id} {item.title!r}"
    if done.already:
        typer.echo(f"No change: {name} {_ALREADY[action]} (status: {now.status}).")
        return
    who = f"by {item.control_by}, {local_time(item.control_at, s.settings)}"
    after = _AFTER.get(action) or _NOW[now.kind].format(id=item.id)
    typer.echo(f"{done.verb} {name} ({local_time(item.published_at, s.settings)}): "
               f"{after} ({who}).")  # fmt: skip
    if done.undo:
        typer.echo(f"Undo with `digest news {done.undo} {item.id}`.")
    if done.sent_in is not None:
        typer.echo(f"Note: it went out in issue #{done.sent_in}, which stays as it was sent.")


@commands.command("remove")
def news_remove(ctx: typer.Context, ref: ItemRef, by: By = None, reason: Reason = "") -> None:
    """Keep an item out of every future issue (a wrong or sensitive item). It is not deleted:
    who removed it, when and why are recorded, and `digest news restore` undoes it.

    Example: digest news remove 12 --reason "names a family"
    """
    _control(state(ctx), ref, "remove", by, reason)


@commands.command("restore")
def news_restore(ctx: typer.Context, ref: ItemRef, by: By = None) -> None:
    """Undo `digest news remove`: the item can go out again.

    Example: digest news restore 12
    """
    _control(state(ctx), ref, "restore", by)


@commands.command("hold")
def news_hold(ctx: typer.Context, ref: ItemRef, by: By = None, reason: Reason = "") -> None:
    """Hold an item back: no issue takes it until `digest news release`.

    Example: digest news hold 12 --reason "embargoed until the board meets"
    """
    _control(state(ctx), ref, "hold", by, reason)


@commands.command("release")
def news_release(ctx: typer.Context, ref: ItemRef, by: By = None) -> None:
    """Release a held (or included) item: the next issue takes it only if its date is in
    the period (`digest news include` takes it whatever its date).

    Example: digest news release 12
    """
    _control(state(ctx), ref, "release", by)


@commands.command("include")
def news_include(ctx: typer.Context, ref: ItemRef, by: By = None) -> None:
    """Put an item into the next issue whatever its date (an older item, a new feed's
    archive). Its real date is kept and shown; the issue's period and subject do not change.

    Example: digest news include https://www.teescpp.example.org/news/item.aspx?id=92
    """
    _control(state(ctx), ref, "include", by)
