"""`init_workspace` (digest/workspace.py): what `digest init` makes, step by step, so the
command only presents it. A real SQLite file, a real (refused) PostgreSQL connection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from digest.config_load import load_settings
from digest.db import head_revision
from digest.demo import free_port
from digest.errors import ConfigError, DigestError
from digest.workspace import ConfigFile, Database, SecretKey, init_workspace


def test_init_workspace_makes_what_is_missing_then_keeps_it(workdir: Path) -> None:
    head = head_revision()
    first = list(init_workspace())
    assert first == [
        ConfigFile(Path("digest.toml"), created=True),
        SecretKey(Path("digest.key"), created=True),
        Database("sqlite:///subscribers.db", None, head),
    ]
    assert (workdir / "digest.key").stat().st_mode & 0o777 == 0o600
    assert len((workdir / "digest.key").read_text().strip()) >= 40
    assert load_settings().config_path == Path("digest.toml")  # the starter file is valid
    again = list(init_workspace())
    assert again == [
        ConfigFile(Path("digest.toml"), created=False),
        SecretKey(Path("digest.key"), created=False),
        Database("sqlite:///subscribers.db", head, head),
    ]


def test_init_workspace_takes_the_key_from_the_environment(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SECRET_KEY", "k" * 20 + "0123456789abcdefghij")
    steps = list(init_workspace("newsletter.toml", overrides={"database_url": "sqlite:///n.db"}))
    assert steps[0] == ConfigFile(Path("newsletter.toml"), created=True)
    assert steps[1] == SecretKey(None, created=False)
    assert steps[2] == Database("sqlite:///n.db", None, head_revision())
    assert not (workdir / "digest.key").exists()


def test_init_workspace_refuses_a_key_file_others_can_read(workdir: Path) -> None:
    key = workdir / "digest.key"
    key.write_text("an old key\n")
    key.chmod(0o644)
    done: list[Any] = []
    with pytest.raises(ConfigError, match="digest.key can be read by other users"):
        done.extend(init_workspace())
    assert done == [ConfigFile(Path("digest.toml"), created=True)]  # said before the failure
    assert key.read_text() == "an old key\n"
    assert not (workdir / "subscribers.db").exists()


def test_init_workspace_maps_a_database_it_cannot_reach_to_a_clear_error(workdir: Path) -> None:
    url = f"postgresql+psycopg://digest@127.0.0.1:{free_port()}/digest?connect_timeout=5"
    steps = init_workspace(overrides={"database_url": url})
    assert next(steps).created and next(steps).created
    with pytest.raises(DigestError, match="cannot create the database") as caught:
        next(steps)
    assert caught.value.hint == "Check DIGEST_DATABASE_URL / --db."


def test_init_says_what_it_made_before_a_step_fails(cli: Any, workdir: Path) -> None:
    r = cli("--db", "sqlite:///missing/subscribers.db", "init")
    assert r.exit_code == 1, r.output
    assert "Created digest.toml: edit the newsletter name" in r.stdout
    assert "Created digest.key (readable by you only)" in r.stdout
    assert "Error: the folder missing does not exist" in r.stderr
    assert "Hint: Create it first." in r.stderr
    assert not (workdir / "missing").exists()
