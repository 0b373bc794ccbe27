"""The docs test (STYLE.md, habit 8): every command has help text and appears in README.md,
and every setting is documented there.

It walks the real Typer app, so a command added without a docstring, or without a line in
the README's command reference, fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer

from digest.cli import app
from digest.config import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def walk(command: Any, path: str = "digest") -> list[tuple[str, Any]]:
    """(command path, command) for the command and, recursively, all its subcommands.

    Duck-typed on `.commands`: typer vendors its own click, so click.Group is not its class.
    """
    found = [(path, command)]
    if isinstance(getattr(command, "commands", None), dict):
        for name, sub in sorted(command.commands.items()):
            found += walk(sub, f"{path} {name}")
    return found


def missing_help(root: Any) -> list[str]:
    return [path for path, cmd in walk(root) if not (cmd.help or cmd.short_help or "").strip()]


def missing_from(text: str, root: Any) -> list[str]:
    return [path for path, _ in walk(root) if path not in text]


COMMANDS = walk(typer.main.get_command(app))


def readme() -> str:
    return README.read_text(encoding="utf-8")


def test_the_walk_finds_the_commands() -> None:
    paths = {path for path, _ in COMMANDS}
    # A few known ones, so a broken walk cannot make the tests below pass vacuously.
    assert {
        "digest",
        "digest send",
        "digest subscribers purge-pending",
        "digest feeds fetch",
        "digest news import-page",
        "digest issues cancel",
        "digest config show",
    } <= paths
    assert len(paths) > 25


@pytest.mark.parametrize("path,command", COMMANDS, ids=[p for p, _ in COMMANDS])
def test_command_has_help(path: str, command: Any) -> None:
    assert (command.help or command.short_help or "").strip(), f"`{path}` has no help text"


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS])
def test_command_is_in_readme(path: str) -> None:
    assert path in readme(), f"`{path}` is not mentioned in README.md"


def test_global_options_are_in_readme() -> None:
    root = typer.main.get_command(app)
    text = readme()
    for param in root.params:
        for opt in param.opts:
            if opt.startswith("--") and opt not in ("--help", "--version"):
                assert opt in text, f"the global option {opt} is not in README.md"


@pytest.mark.parametrize(
    "key", [field.alias or name for name, field in Settings.model_fields.items()]
)
def test_setting_is_in_readme(key: str) -> None:
    assert f"`{key}`" in readme(), f"the setting `{key}` is not documented in README.md"


def test_the_checks_catch_a_command_without_help_or_docs() -> None:
    """The helpers above really fail: a command with no docstring, missing from a README."""
    demo = typer.Typer(help="A group.", add_completion=False)
    sub = typer.Typer(help="A subgroup.")
    demo.add_typer(sub, name="things")

    @sub.command("documented")
    def documented() -> None:
        """Has help."""

    @sub.command("bare")
    def bare() -> None:
        pass

    root = typer.main.get_command(demo)
    assert missing_help(root) == ["digest things bare"]
    text = "digest, digest things, digest things documented"
    assert missing_from(text, root) == ["digest things bare"]
