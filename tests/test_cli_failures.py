"""Failures of the machine or of the input that used to end in "unexpected …": each now says
what is wrong and what to do, exits non-zero without a traceback, and changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from digest.config_load import load_settings
from digest.db import make_engine
from digest.web.app import create_app

from .helpers.machine import fill_disk, run_digest, small_disk, unprivileged
from .helpers.smtp import Received, SmtpServer
from .helpers.web import live_server, rows

HUGE = "99999999999999999999"


def _no_traceback(output: str) -> None:
    assert "Traceback" not in output and "unexpected" not in output, output


def test_a_config_file_that_is_not_utf8(cli: Callable[..., Any], workdir: Path) -> None:
    Path("digest.toml").write_bytes(b'name = "Caf\xe9 news"\n')  # Windows-1252, as Notepad saved it
    r = cli("config", "show")
    assert r.exit_code == 3
    assert "Error: digest.toml is not UTF-8 text (byte 0xe9 at position 11)" in r.stderr
    assert "Hint: Save it as UTF-8" in r.stderr
    _no_traceback(r.output)


def test_a_database_file_that_is_not_sqlite(cli: Callable[..., Any], env: dict[str, str]) -> None:
    other = Path("notes.db")
    content = b"These are my meeting notes, not a database.\n" * 200
    other.write_bytes(content)
    for args in (("subscribers", "list"), ("init",), ("send", "--yes")):
        r = cli("--db", str(other), *args)
        assert r.exit_code == 1, (args, r.output)
        assert "Error: notes.db is not a SQLite database (file is not a database)" in r.stderr
        assert "Check DIGEST_DATABASE_URL / --db" in r.stderr
        _no_traceback(r.output)
    assert other.read_bytes() == content  # nothing was written into it


def test_a_nul_byte_in_a_csv_address_is_named(cli: Callable[..., Any], env: dict[str, str]) -> None:
    Path("list.csv").write_bytes(b"email,name\nana\x00@example.org,Ana\nbo@example.org,Bo\n")
    r = cli("subscribers", "import", "list.csv")
    assert r.exit_code == 1
    assert "line 2: 'ana\\x00@example.org': the address contains a NUL character" in r.stderr
    assert "line break" not in r.stderr
    assert r.stdout.startswith("Imported 1 subscriber;")


def test_huge_issue_numbers(cli: Callable[..., Any], env: dict[str, str]) -> None:
    for args in (("issues", "show", HUGE), ("issues", "retry", HUGE),
                 ("issues", "cancel", HUGE, "--yes"), ("issues", "show", "0")):  # fmt: skip
        r = cli(*args)
        assert r.exit_code == 1, (args, r.output)
        assert f"Error: no issue {args[2]}" in r.stderr
        _no_traceback(r.output)
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    app = create_app(load_settings().settings, engine=engine)
    with live_server(app) as url:
        for number in (HUGE, "9223372036854775808", "2147483648"):
            r = httpx.get(f"{url}/archive/{number}")
            assert r.status_code == 404, number
    engine.dispose()


def test_piping_into_head_stops_quietly(cli: Callable[..., Any], env: dict[str, str]) -> None:
    Path("many.csv").write_text(
        "email\n" + "".join(f"reader{i}@example.org\n" for i in range(2000)), encoding="utf-8"
    )
    assert cli("subscribers", "import", "many.csv").exit_code == 0
    for command in ("subscribers list", "subscribers list --format csv", "subscribers export -"):
        done = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {sys.executable} -m digest {command} | head -n 2"],
            capture_output=True, text=True, env=dict(os.environ), timeout=60,
        )  # fmt: skip
        assert len(done.stdout.splitlines()) == 2, command
        assert done.stderr == "", (command, done.stderr)
        assert done.returncode == 141, command  # as a command killed by SIGPIPE


def test_a_read_only_folder_says_sqlite_needs_its_wal_and_shm_files(
    cli: Callable[..., Any], env: dict[str, str], workdir: Path
) -> None:
    prefix = unprivileged()
    folder = workdir / "srv"
    folder.mkdir()
    db = folder / "subscribers.db"
    environ = {**os.environ, "DIGEST_DATABASE_URL": f"sqlite:///{db}"}
    assert run_digest("init", cwd=workdir, env=environ).returncode == 0
    folder.chmod(0o555)  # e.g. the folder belongs to root and digest runs as another user
    try:
        done = run_digest("subscribers", "list", cwd=workdir, env=environ, prefix=prefix)
    finally:
        folder.chmod(0o755)
    assert done.returncode == 1, done
    assert f"Error: the folder {folder} is read-only for the user" in done.stderr
    assert (
        "SQLite needs to create subscribers.db-wal and subscribers.db-shm next to the database"
        in done.stderr
    )
    assert "Hint: Make the folder writable by" in done.stderr
    _no_traceback(done.stderr)

    db.chmod(0o400)  # now the file itself
    done = run_digest("subscribers", "add", "ana@example.org", cwd=workdir, env=environ,
                      prefix=prefix)  # fmt: skip
    db.chmod(0o600)
    assert done.returncode == 1, done
    assert f"Error: the database {db} is read-only for the user" in done.stderr
    _no_traceback(done.stderr)


def test_a_key_file_digest_may_not_read(
    cli: Callable[..., Any], env: dict[str, str], workdir: Path
) -> None:
    prefix = unprivileged()
    environ = {k: v for k, v in os.environ.items() if k != "DIGEST_SECRET_KEY"}
    key = workdir / "digest.key"
    key.write_text("k" * 20 + "0123456789abcdef\n")
    key.chmod(0o600)
    os.chown(key, 65534, 65534)  # made by another user (here: nobody)
    done = run_digest("subscribers", "add", "ana@example.org", cwd=workdir, env=environ,
                      prefix=prefix)  # fmt: skip
    assert done.returncode == 3, done
    assert "Error: secret_key_file: digest.key cannot be read by the user" in done.stderr
    assert "(it belongs to nobody)" in done.stderr
    _no_traceback(done.stderr)


def test_a_full_disk_during_a_send(
    cli: Callable[..., Any], env: dict[str, str], workdir: Path, smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    with small_disk(workdir / "disk", "4m") as disk:
        monkeypatch.setenv("DIGEST_DATABASE_URL", f"sqlite:///{disk / 'subscribers.db'}")
        assert cli("init").exit_code == 0
        Path("list.csv").write_text(
            "email\n" + "".join(f"reader{i}@example.org\n" for i in range(200)), encoding="utf-8"
        )
        assert cli("subscribers", "import", "list.csv").exit_code == 0
        published = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        r = cli("news", "add", "--title", "An item", "--url", "https://example.org/n/1",
                "--published", published)  # fmt: skip
        assert r.exit_code == 0

        def full_after_the_first(received: Received) -> None:
            if not (disk / "filler").exists():
                fill_disk(disk)

        smtp_server.on_data = full_after_the_first
        r = cli("send", "--yes")
        assert r.exit_code == 1, r.output
        assert f"Error: the disk holding {disk / 'subscribers.db'} is full" in r.stderr
        assert "Hint: Free some space" in r.stderr and "resumes where it stopped" in r.stderr
        _no_traceback(r.output)

        smtp_server.on_data = None
        (disk / "filler").unlink()
        # the next run, as cron would start it: a process of its own
        done = run_digest("send", "--yes", cwd=workdir, env=dict(os.environ))
        assert done.returncode == 0, done
        assert "is complete" in done.stdout
        engine = make_engine(f"sqlite:///{disk / 'subscribers.db'}")
        assert rows(engine, "SELECT status, count(*) FROM delivery GROUP BY status") == [
            ("sent", 200)
        ]
        engine.dispose()
    received = smtp_server.by_rcpt()
    assert len(received) == 200  # everyone got it; only what was in flight may have gone twice
