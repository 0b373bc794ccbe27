"""The opt-in lifecycle on the command line (lifecycle.py): a pending import with confirmation
emails, purging stale pending subscribers, confirming and removing with a consent trail and a
suppression."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from digest.config_load import load_settings
from digest.web.app import create_app

from .helpers.newsletter import SECRET
from .helpers.smtp import SmtpServer
from .helpers.web import confirm_link, path_of, rows


def _csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(["email,name", *lines]) + "\n", encoding="utf-8")
    return path


def test_import_pending_sends_each_new_subscriber_a_confirmation(
    cli: Callable[..., Any],
    env: dict[str, str],
    engine: Engine,
    smtp_server: SmtpServer,
    workdir: Path,
) -> None:
    cli("subscribers", "add", "already@example.org")
    f = _csv(workdir / "old-list.csv", ["ana@example.org,Ana", "ben@example.org,Ben",
                                         "already@example.org,", "not-an-address,"])  # fmt: skip
    r = cli("subscribers", "import", str(f), "--status", "pending", "--send-confirmation")
    assert r.exit_code == 1, r.output  # a row was rejected
    assert (
        "Imported 2 subscribers as pending; skipped 1 already on the list; rejected 1." in r.stdout
    )
    assert "Sent 2 confirmation emails." in r.stdout
    assert "line 5: 'not-an-address'" in r.stderr
    assert sorted(smtp_server.by_rcpt()) == ["ana@example.org", "ben@example.org"]
    assert rows(engine, "SELECT email, status, status_source FROM subscriber ORDER BY id") == [
        ("already@example.org", "active", "cli"),
        ("ana@example.org", "pending", "import"),
        ("ben@example.org", "pending", "import"),
    ]
    sent = "SELECT source, detail FROM subscriber_event WHERE detail LIKE 'confirmation%'"
    assert rows(engine, sent) == [("import", "confirmation sent")] * 2
    # The link in the email confirms them.
    link = confirm_link(smtp_server.by_rcpt()["ana@example.org"][0])
    with TestClient(create_app(load_settings().settings, engine=engine)) as client:
        assert client.post(path_of(link)).status_code == 200
    assert rows(engine, "SELECT status FROM subscriber WHERE email = 'ana@example.org'") == [
        ("active",)
    ]
    # Importing the same list again sends nothing more.
    r = cli("subscribers", "import", str(f), "--status", "pending", "--send-confirmation")
    assert "Imported 0 subscribers as pending; skipped 3 already on the list" in r.stdout
    assert "Sent 0 confirmation emails." in r.stdout
    assert len(smtp_server.messages) == 2


def test_import_confirmations_not_accepted_are_retried_by_running_it_again(
    cli: Callable[..., Any], env: dict[str, str], smtp_server: SmtpServer, workdir: Path
) -> None:
    f = _csv(workdir / "list.csv", ["ana@example.org,", "ben@example.org,"])
    smtp_server.reply = lambda rcpt, data: (
        "451 4.7.1 Slow down" if rcpt == "ben@example.org" else None
    )
    r = cli("subscribers", "import", str(f), "--status", "pending", "--send-confirmation")
    assert r.exit_code == 75, r.output
    assert "Sent 1 confirmation email." in r.stdout
    assert "1 confirmation email not sent:" in r.stderr
    assert "ben@example.org: 451 4.7.1 Slow down" in r.stderr
    assert "run the same import again later" in r.stderr
    smtp_server.reply = None
    r = cli("subscribers", "import", str(f), "--status", "pending", "--send-confirmation")
    assert r.exit_code == 0, r.output
    assert "Sent 1 confirmation email." in r.stdout
    assert [m.rcpt_tos for m in smtp_server.messages] == [["ana@example.org"], ["ben@example.org"]]


def test_send_confirmation_needs_pending_and_base_url(
    cli: Callable[..., Any], env: dict[str, str], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = _csv(workdir / "list.csv", ["ana@example.org,"])
    r = cli("subscribers", "import", str(f), "--send-confirmation")
    assert r.exit_code == 2
    assert "Error: --send-confirmation needs --status pending" in r.stderr
    monkeypatch.delenv("DIGEST_BASE_URL")
    r = cli("subscribers", "import", str(f), "--status", "pending", "--send-confirmation")
    assert r.exit_code == 3
    assert "Error: base_url is not set" in r.stderr
    r = cli("subscribers", "list")
    assert "0 subscribers" in r.stdout  # nothing imported before the error


def test_purge_pending_erases_only_stale_unconfirmed_subscribers(
    cli: Callable[..., Any], env: dict[str, str], engine: Engine
) -> None:
    people = [("stale@example.org", "pending"), ("asked-again@example.org", "pending"),
              ("fresh@example.org", "pending"), ("old-active@example.org", "active")]  # fmt: skip
    for email, status in people:
        assert cli("subscribers", "add", email, "--status", status).exit_code == 0
    old = (datetime.now(UTC) - timedelta(days=40)).replace(tzinfo=None).isoformat(" ")
    with engine.begin() as c:
        from sqlalchemy import text

        c.execute(text("UPDATE subscriber SET status_changed_at = :t, created_at = :t "
                       "WHERE email != 'fresh@example.org'"), {"t": old})  # fmt: skip
        c.execute(text("UPDATE subscriber_event SET at = :t"), {"t": old})
        # asked-again requested a new link last week: they are kept
        c.execute(text(
            "INSERT INTO subscriber_event (subscriber_id, at, status, source, detail) "
            "SELECT id, :t, 'pending', 'web', 'confirmation sent' FROM subscriber "
            "WHERE email = 'asked-again@example.org'"),
            {"t": (datetime.now(UTC) - timedelta(days=7)).replace(tzinfo=None).isoformat(" ")},
        )  # fmt: skip
    r = cli("subscribers", "purge-pending", "--older-than", "30d", "--dry-run")
    assert r.exit_code == 0
    assert r.stdout == "Would erase 1 pending subscriber older than 30d.\n  stale@example.org\n"
    assert len(rows(engine, "SELECT id FROM subscriber")) == 4
    r = cli("subscribers", "purge-pending", "--older-than", "30d")
    assert r.exit_code == 0
    assert r.stdout == "Erased 1 pending subscriber older than 30d.\n"
    assert [e for e, in rows(engine, "SELECT email FROM subscriber ORDER BY id")] == [
        "asked-again@example.org", "fresh@example.org", "old-active@example.org"
    ]  # fmt: skip
    assert rows(engine, "SELECT count(*) FROM suppression") == [(0,)]
    r = cli("subscribers", "purge-pending")  # default 30d
    assert r.exit_code == 0 and r.stdout == "Erased 0 pending subscribers older than 30d.\n"


@pytest.mark.parametrize("value", ["soon", "0d", "30", "-3d"])
def test_purge_pending_rejects_a_bad_duration(
    cli: Callable[..., Any], env: dict[str, str], value: str
) -> None:
    r = cli("subscribers", "purge-pending", "--older-than", value)
    assert r.exit_code == 2
    assert f"Error: --older-than: {value!r} is not a duration; use e.g. 30d, 2w or 48h" in r.stderr


def test_confirm_and_remove_keep_a_consent_trail_and_a_suppression(
    cli: Callable[..., Any],
    env: dict[str, str],
    engine: Engine,
    smtp_server: SmtpServer,
    workdir: Path,
) -> None:
    cli("subscribers", "add", "ana@example.org", "--status", "pending")
    r = cli("subscribers", "confirm", "ana@example.org")
    assert r.exit_code == 0 and r.stdout == "Confirmed ana@example.org.\n"
    assert rows(engine, "SELECT status, source, detail FROM subscriber_event ORDER BY id") == [
        ("pending", "cli", "added"), ("active", "cli", "confirmed by staff")
    ]  # fmt: skip
    r = cli("subscribers", "confirm", "ana@example.org")
    assert r.exit_code == 2 and "Error: ana@example.org is active, not pending" in r.stderr
    r = cli("subscribers", "remove", "ana@example.org", "--yes")
    assert r.exit_code == 0 and r.stdout == "Removed ana@example.org.\n"
    assert rows(engine, "SELECT count(*) FROM subscriber") == [(0,)]
    assert rows(engine, "SELECT count(*) FROM subscriber_event") == [(0,)]
    # a keyed hash (HMAC with the secret key over the sha256): without the key, a copy of the
    # database does not tell whether an address was erased
    unkeyed = hashlib.sha256(b"ana@example.org").hexdigest().encode()
    keyed = hmac.new(SECRET.encode(), b"digest:suppression:" + unkeyed, hashlib.sha256)
    assert rows(engine, "SELECT email_hash FROM suppression") == [(keyed.hexdigest(),)]
    # A later import does not silently re-add them...
    f = _csv(workdir / "list.csv", ["ANA@example.org,"])
    r = cli("subscribers", "import", str(f))
    assert r.exit_code == 1 and "suppressed" in r.stderr
    # ...but they can ask again themselves, and are on the list once they confirm.
    with TestClient(create_app(load_settings().settings, engine=engine)) as client:
        assert client.post("/subscribe", data={"email": "ana@example.org"}).status_code == 200
        smtp_server.wait_for(1)
        assert client.post(path_of(confirm_link(smtp_server.messages[0]))).status_code == 200
    assert rows(engine, "SELECT status, status_source FROM subscriber") == [("active", "web")]
