"""`digest topics …`: the topics subscribers choose from (the categories of news items)."""

from __future__ import annotations

from typing import Annotated

import typer

from digest.cli._context import state, sub_app, table
from digest.db import session_scope
from digest.text import plural

topics_app = sub_app("The topics subscribers choose from: the categories of news items.")


@topics_app.command("list")
def topics_list(ctx: typer.Context) -> None:
    """List the topics with their item count and how many subscribers chose each.

    Example: digest topics list
    """
    from digest.topics import everything_count, list_topics

    s = state(ctx)
    with session_scope(s.engine()) as session:
        topics = list_topics(session, s.settings)
        everyone = everything_count(session)
    rows = [[t.name, str(t.items), str(t.subscribers), t.description] for t in topics]
    typer.echo(table(["topic", "items", "subscribers", "description"], rows))
    typer.echo(
        f"{plural(len(topics), 'topic')}; {plural(everyone, 'active subscriber')} "
        "chose none and get every topic."
    )


@topics_app.command("rename")
def topics_rename(
    ctx: typer.Context,
    old: Annotated[str, typer.Argument(help="The topic as it is named now.")],
    new: Annotated[str, typer.Argument(help="Its new name.")],
) -> None:
    """Rename a topic: its items, feed sources, description and the subscribers who chose it
    follow (issues already made keep their frozen copy).

    Example: digest topics rename "training" "Training dates"
    """
    from digest.topics import rename_topic

    s = state(ctx)
    with session_scope(s.engine()) as session:
        r = rename_topic(session, s.settings, old, new)
    typer.echo(
        f"Renamed {r.old} to {r.new}: {plural(r.items, 'item')}, {plural(r.sources, 'source')}, "
        f"{plural(r.subscribers, 'subscriber')}."
    )


@topics_app.command("describe")
def topics_describe(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The topic.")],
    text: Annotated[
        str, typer.Argument(help="A sentence for the preferences page ('' removes it).")
    ],
) -> None:
    """Describe a topic in a sentence, shown under it on the preferences page.

    Example: digest topics describe Training "Course dates and places for all staff."
    """
    from digest.topics import describe_topic

    s = state(ctx)
    with session_scope(s.engine()) as session:
        t = describe_topic(session, s.settings, name, text)
    typer.echo(f"{t.name}: {t.description or '(no description)'}")
