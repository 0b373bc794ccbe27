"""The `digest` command line: parse, call one library function, present the result.

One module per noun (setup, subscribers, news, send, issues, serve, inbox); `_context` holds
what they share. Errors are translated in one place (`_DigestGroup.invoke`): `Error: …` and a hint on
stderr, a non-zero exit code, and a traceback only with --verbose.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from digest import __version__
from digest.cli import (
    inbox,
    issues,
    news,
    news_edit,
    review,
    send,
    serve,
    setup,
    subscribers,
    topics,
)
from digest.cli._context import State
from digest.errors import EXIT_ERROR, EXIT_INTERRUPTED, DigestError


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

    s = ctx.obj if isinstance(ctx.obj, State) else None
    url = s._loaded.settings.database_url if s is not None and s._loaded is not None else None
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


app = typer.Typer(
    cls=_DigestGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals would include the SMTP password
    rich_markup_mode=None,
)
# Commands of the app itself (`digest init`, `digest send`…), then the groups of commands.
app.add_typer(setup.commands)
app.add_typer(send.commands)
app.add_typer(serve.commands)
app.add_typer(subscribers.subscribers_app, name="subscribers")
subscribers.subscribers_app.add_typer(serve.subscribers_commands)  # purge-pending
app.add_typer(news.news_app, name="news")
news.news_app.add_typer(news_edit.commands)  # edit, remove, restore, hold, release, include
app.add_typer(topics.topics_app, name="topics")
app.add_typer(issues.issues_app, name="issues")
issues.issues_app.add_typer(review.review_commands)  # approve, refresh
app.add_typer(setup.config_app, name="config")
app.add_typer(setup.db_app, name="db")
app.add_typer(news.feeds_app, name="feeds")
app.add_typer(inbox.inbox_app, name="inbox")
app.add_typer(inbox.bounces_app, name="bounces")
subscribers.subscribers_app.add_typer(inbox.reactivate_commands)  # reactivate


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


def main() -> None:
    """Console entry point."""
    try:
        app()
    except SystemExit as exc:
        _exit_now(exc)
        raise


def _exit_now(exc: SystemExit) -> None:
    """Exit as `sys.exit` would, but without tearing the interpreter down: with SQLAlchemy,
    pydantic, lxml and premailer loaded that takes ~0.3 s, as long as everything `digest send`
    does after its last message. The exit handlers still run (logging, finalizers) and the
    output is flushed; only when another thread is still alive is the exit left to Python."""
    import atexit
    import threading

    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        return
    code = exc.code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)  # what sys.exit("message") prints
        code = 1
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # a broken pipe, say: let Python's own exit deal with it
        return
    os._exit(code or 0)
