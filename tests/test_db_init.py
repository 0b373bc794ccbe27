"""`digest init` and the schema check (db.py): commands refuse a missing or old database and say
to run init; init is safe to rerun and writes a valid starter config."""

from __future__ import annotations

from pathlib import Path

from digest.db import head_revision, make_engine, upgrade


def test_commands_refuse_an_old_schema(cli, workdir: Path) -> None:
    engine = make_engine(f"sqlite:///{workdir / 'subscribers.db'}")
    upgrade(engine, "0001")
    engine.dispose()
    result = cli("subscribers", "list")
    assert result.exit_code == 1
    assert "the database schema is at revision 0001" in result.stderr
    assert "digest init" in result.stderr
    result = cli("init")
    assert result.exit_code == 0, result.output
    assert (
        f"Upgraded the database sqlite:///subscribers.db from schema 0001 to {head_revision()}"
        in result.stdout
    )
    assert cli("subscribers", "list").exit_code == 0


def test_commands_without_a_database_say_run_init(cli, workdir: Path) -> None:
    result = cli("subscribers", "list")
    assert result.exit_code == 1
    assert f"Error: no database at subscribers.db in {workdir}" in result.stderr
    assert "`digest init` creates a new one" in result.stderr
    assert not (workdir / "subscribers.db").exists()  # nothing half-made
    absolute = cli("--db", str(workdir / "gone.db"), "subscribers", "list")
    assert absolute.exit_code == 1
    assert f"Error: no database at {workdir / 'gone.db'}\n" in absolute.stderr
    assert "Run `digest init`" in absolute.stderr


def test_run_from_another_folder_names_the_folder(cli, workdir: Path, monkeypatch) -> None:
    """An MTA's pipe or a cron line runs digest in another folder: a relative database path
    then names nothing there, and the error says where it looked and what to do."""
    assert cli("init").exit_code == 0
    elsewhere = workdir / "spool"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = cli("--config", str(workdir / "digest.toml"), "subscribers", "list")
    assert result.exit_code == 1
    assert f"no database at subscribers.db in {elsewhere}" in result.stderr
    assert "(a relative path starts from the folder digest runs in)" in result.stderr
    assert "`cd` first" in result.stderr and "sqlite:////srv/digest/subscribers.db" in result.stderr


def test_init_is_safe_to_rerun(cli, workdir: Path) -> None:
    first = cli("init")
    assert first.exit_code == 0, first.output
    assert "Created digest.toml" in first.stdout
    assert "Created digest.key" in first.stdout
    assert "Created the database" in first.stdout
    assert (workdir / "digest.key").stat().st_mode & 0o777 == 0o600
    key = (workdir / "digest.key").read_text()
    Path("digest.toml").write_text(Path("digest.toml").read_text() + "\n# my edit\n")
    cli("subscribers", "add", "ana@example.org")
    second = cli("init")
    assert second.exit_code == 0, second.output
    assert "Kept digest.toml" in second.stdout and "Kept digest.key" in second.stdout
    assert "is up to date" in second.stdout
    assert "# my edit" in Path("digest.toml").read_text()
    assert (workdir / "digest.key").read_text() == key
    assert "ana@example.org" in cli("subscribers", "list").stdout


def test_starter_config_is_valid(cli, workdir: Path) -> None:
    assert cli("init").exit_code == 0
    result = cli("config", "show")
    assert result.exit_code == 0, result.output
    assert "Config file: digest.toml" in result.stdout
