"""Setting up: `digest init`, `digest config show` and `digest demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from digest.cli._context import state, sub_app, table
from digest.config_load import describe_settings, key_warnings
from digest.text import plural

commands = sub_app()
config_app = sub_app("Show the effective settings.")
db_app = sub_app("Move the whole database to another one.")


@commands.command()
def init(ctx: typer.Context) -> None:
    """Create (or upgrade) the database, a starter digest.toml and a secret key file.

    Safe to re-run: existing files are kept and the database is upgraded in place.

    Example: digest init
    """
    from digest.workspace import ConfigFile, Database, SecretKey, init_workspace

    s = state(ctx)
    for step in init_workspace(s.config_path, overrides=s.overrides):
        match step:
            case ConfigFile(path, created=True):
                typer.echo(f"Created {path}: edit the newsletter name, addresses and smtp_url.")
            case SecretKey(None, _):
                typer.echo("Secret key: from DIGEST_SECRET_KEY.")
            case SecretKey(path, created=True):
                typer.echo(f"Created {path} (readable by you only): it signs unsubscribe links.")
            case ConfigFile(path, _) | SecretKey(path, _):
                typer.echo(f"Kept {path}.")
            case Database(where, None, after):
                typer.echo(f"Created the database {where} (schema {after}).")
            case Database(where, before, after) if before != after:
                typer.echo(f"Upgraded the database {where} from schema {before} to {after}.")
            case Database(where, _, after):
                typer.echo(f"The database {where} is up to date (schema {after}).")


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print every setting, its value (secrets hidden) and where it came from.

    Example: digest config show
    """
    loaded = state(ctx).loaded()
    if loaded.config_path:
        typer.echo(f"Config file: {loaded.config_path}")
    else:
        typer.echo("Config file: none (built-in defaults and DIGEST_* environment)")
    typer.echo(table(["setting", "value", "from"], describe_settings(loaded)))
    for warning in key_warnings(loaded.settings):
        typer.echo(f"Warning: {warning}", err=True)


@commands.command()
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


@db_app.command("copy")
def db_copy(
    source: Annotated[str, typer.Argument(help="The database to copy: a URL or a SQLite file.")],
    target: Annotated[
        str, typer.Argument(help="An empty database to copy it into (created or upgraded).")
    ],
) -> None:
    """Copy a whole database, deliveries and consent log included, into an empty one.

    Example: digest db copy subscribers.db postgresql+psycopg://digest@db.example.org/digest
    """
    from digest.dbcopy import copy_database

    report = copy_database(source, target)
    for name, n in report.rows.items():
        typer.echo(f"  {name}: {plural(n, 'row')}")
    total = sum(report.rows.values())
    typer.echo(f"Copied {plural(total, 'row')} from {report.source} to {report.target}.")
