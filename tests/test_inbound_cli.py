"""The inbound commands: `digest inbox fetch` and `receive` (exit codes an MTA understands),
`digest bounces list`, `digest subscribers reactivate`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from digest.db import make_engine

from .helpers import reports
from .helpers.web import rows


@pytest.fixture
def engine(env: dict[str, str]) -> Any:
    eng = make_engine(env["DIGEST_DATABASE_URL"])
    yield eng
    eng.dispose()


def _status(engine: Engine, email: str) -> str:
    [(status,)] = rows(engine, "SELECT status FROM subscriber WHERE email = :e", e=email)
    return str(status)


def _maildir(root: Path, messages: list[bytes]) -> Path:
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir(parents=True)
    for i, raw in enumerate(messages):
        (root / "new" / f"{i}.test").write_bytes(raw)
    return root


def test_fetch_prints_the_summary_and_lists_each_with_verbose(
    env: dict[str, str], cli: Callable[..., Any], engine: Engine, workdir: Path
) -> None:
    ana, bo = reports.make_world(engine, ["ana@example.com", "bo@example.com"])
    box = _maildir(workdir / "Maildir", [reports.gmail_dsn(ana), reports.human_reply(bo)])
    r = cli("inbox", "fetch", str(box), "--verbose")
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert lines[-1] == (
        "2 read: 1 bounces (1 permanent, 0 temporary), 0 complaints, 0 unsubscribes, "
        "0 auto-replies ignored, 1 for a person, 0 already seen"
    )
    assert any("new/0.test: bounce ana@example.com (status changed): permanent bounce 5.1.1" in ln
               for ln in lines)  # fmt: skip
    assert any("new/1.test: person: not a report" in ln for ln in lines), lines
    assert _status(engine, "ana@example.com") == "bounced"


def test_fetch_uses_inbox_url_and_says_what_is_missing(
    env: dict[str, str], cli: Callable[..., Any], engine: Engine, workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    r = cli("inbox", "fetch")
    assert r.exit_code == 3
    assert "Error: no mailbox to read" in r.stderr and "DIGEST_INBOX_URL" in r.stderr
    r = cli("inbox", "fetch", str(workdir / "nowhere"))
    assert r.exit_code == 2 and "no mailbox at" in r.stderr and "Traceback" not in r.output
    [ana] = reports.make_world(engine, ["ana@example.com"])
    box = _maildir(workdir / "Maildir", [reports.unsubscribe_mail(ana)])
    monkeypatch.setenv("DIGEST_INBOX_URL", f"maildir:{box}")
    r = cli("inbox", "fetch")
    assert r.exit_code == 0, r.output
    assert "1 unsubscribes" in r.stdout
    assert _status(engine, "ana@example.com") == "unsubscribed"


def _receive(
    env: dict[str, str], raw: bytes, *extra: str, cmd_after: bool = False, **env_over: str
) -> Any:
    """`digest inbox receive` as an MTA runs it: a process, the message on stdin."""
    import os

    environ = {**os.environ, **env, **env_over}
    args = ["inbox", "receive", *extra] if cmd_after else [*extra, "inbox", "receive"]
    return subprocess.run(
        [sys.executable, "-m", "digest", *args],
        input=raw, capture_output=True, env=environ, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_receive_accepts_acts_and_never_bounces_a_bounce(
    env: dict[str, str], engine: Engine, workdir: Path
) -> None:
    ana, bo = reports.make_world(engine, ["ana@example.com", "bo@example.com"])
    dsn = reports.gmail_dsn(ana)
    done = _receive(env, dsn, ORIGINAL_RECIPIENT=ana.return_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().startswith("bounce ana@example.com: permanent bounce 5.1.1")
    assert _status(engine, "ana@example.com") == "bounced"
    again = _receive(env, dsn)
    assert again.returncode == 0 and again.stdout.decode().startswith("already seen")
    keep = workdir / "for-a-person"
    not_yet = _receive(env, reports.human_reply(bo), "--keep", str(keep), cmd_after=True)
    assert not_yet.returncode == 75 and b"is not a Maildir" in not_yet.stderr
    for sub in ("cur", "new", "tmp"):
        (keep / sub).mkdir(parents=True)
    reply = reports.human_reply(bo)
    kept = _receive(env, reply, "--keep", str(keep), cmd_after=True)
    assert kept.returncode == 0 and kept.stdout.decode().startswith("person")
    [path] = (keep / "new").iterdir()
    assert path.read_bytes() == reply  # kept whole for a person to read
    junk = _receive(env, b"\x00\xff garbage \x00" * 100)
    assert junk.returncode == 0 and junk.stdout.decode().startswith("person")
    # a database that is not there: 75 (EX_TEMPFAIL), the MTA keeps the message and retries
    gone = _receive(env, reports.gmail_dsn(bo), DIGEST_DATABASE_URL=f"sqlite:///{workdir}/x.db")
    assert gone.returncode == 75
    assert b"Error: no database at" in gone.stderr and b"the MTA will try again" in gone.stderr
    assert b"Traceback" not in gone.stderr
    # no secret key: a setup error, still 75 and never 1, 2 or 3 (which would bounce)
    nokey = _receive(
        env,
        reports.gmail_dsn(bo),
        DIGEST_SECRET_KEY="",
        DIGEST_SECRET_KEY_FILE=str(workdir / "none"),
    )
    assert nokey.returncode == 75 and b"no secret key" in nokey.stderr
    assert _status(engine, "bo@example.com") == "active"


def test_bounces_list_table_json_and_since(
    env: dict[str, str], cli: Callable[..., Any], engine: Engine
) -> None:
    [ana, bo] = reports.make_world(engine, ["ana@example.com", "bo@example.com"])
    from digest.config import load_settings
    from digest.inbound.act import process_message

    settings = load_settings().settings
    process_message(engine, settings, reports.office365_dsn(ana, status="4.2.2"))
    process_message(engine, settings, reports.arf_report(bo))
    r = cli("bounces", "list")
    assert r.exit_code == 0, r.output
    assert "ana@example.com  temporary  4.2.2" in r.stdout
    assert "bo@example.com   complaint  abuse" in r.stdout
    assert r.stdout.strip().endswith("2 events")
    data = json.loads(cli("bounces", "list", "--format", "json").stdout)
    assert [(e["email"], e["kind"], e["score_after"]) for e in data] == [
        ("ana@example.com", "temporary", 0.25), ("bo@example.com", "complaint", 0.0)
    ]  # fmt: skip
    r = cli("bounces", "list", "--since", "2099-01-01")
    assert r.exit_code == 0 and r.stdout.strip().endswith("0 events")
    r = cli("bounces", "list", "--since", "not a date")
    assert r.exit_code == 2 and "--since" in r.stderr


def test_subscribers_reactivate(
    env: dict[str, str], cli: Callable[..., Any], engine: Engine
) -> None:
    [ana, bo] = reports.make_world(engine, ["ana@example.com", "bo@example.com"])
    from digest.config import load_settings
    from digest.inbound.act import process_message

    settings = load_settings().settings
    process_message(engine, settings, reports.gmail_dsn(ana))
    process_message(engine, settings, reports.unsubscribe_mail(bo))
    r = cli("subscribers", "list", "--status", "bounced")
    assert "ana@example.com" in r.stdout and "bo@example.com" not in r.stdout
    r = cli("subscribers", "reactivate", "ana@example.com")
    assert r.exit_code == 0 and "Re-activated ana@example.com" in r.stdout
    assert _status(engine, "ana@example.com") == "active"
    r = cli("subscribers", "reactivate", "bo@example.com")
    assert r.exit_code == 2 and "staff cannot re-activate them" in r.stderr
    r = cli("subscribers", "reactivate", "ana@example.com")
    assert r.exit_code == 2 and "not bounced" in r.stderr


def test_the_inbox_password_is_a_secret(
    env: dict[str, str], cli: Callable[..., Any], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_INBOX_PASSWORD", "hunter2-imap")
    r = cli("config", "show")
    assert r.exit_code == 0 and "hunter2-imap" not in r.output
    assert any("inbox_password" in ln and "(set, hidden)" in ln for ln in r.stdout.splitlines())
    (workdir / "digest.toml").write_text('inbox_password = "hunter2-imap"\n')
    r = cli("config", "show")
    assert r.exit_code == 3 and "inbox_password must not be written in the config file" in r.stderr
