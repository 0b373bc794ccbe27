from __future__ import annotations

import csv
import json
from pathlib import Path

from .helpers.db import count


def test_add_and_list(cli, env) -> None:
    r = cli("subscribers", "add", "  Ana.Jones@Example.ORG ", "--name", "Ana Jones")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "Added Ana.Jones@example.org (active)."
    r = cli("subscribers", "add", "bo@example.org", "--status", "pending")
    assert "Added bo@example.org (pending)." in r.stdout
    r = cli("subscribers", "list")
    assert r.exit_code == 0
    assert "Ana.Jones@example.org" in r.stdout and "Ana Jones" in r.stdout
    assert "2 subscribers" in r.stdout
    r = cli("subscribers", "list", "--status", "pending", "--format", "json")
    assert [row["email"] for row in json.loads(r.stdout)] == ["bo@example.org"]
    r = cli("subscribers", "list", "--format", "csv")
    rows = list(csv.DictReader(r.stdout.splitlines()))
    assert [row["status"] for row in rows] == ["active", "pending"]


def test_duplicate_is_refused_case_insensitively(cli, env) -> None:
    assert cli("subscribers", "add", "ana@example.org").exit_code == 0
    r = cli("subscribers", "add", "ANA@EXAMPLE.ORG")
    assert r.exit_code == 2
    assert "Error: ana@example.org is already subscribed" in r.stderr.replace("ANA", "ana")
    assert count(env, "SELECT count(*) FROM subscriber") == 1


def test_invalid_address_is_refused(cli, env) -> None:
    for bad in ("not-an-address", "ana@", "ana@example.org\r\nBcc: x@y.org", ""):
        r = cli("subscribers", "add", bad)
        assert r.exit_code == 2, bad
        assert "Error: invalid address" in r.stderr
        assert "Traceback" not in r.output
    assert count(env, "SELECT count(*) FROM subscriber") == 0


def test_bad_status_is_a_usage_error(cli, env) -> None:
    r = cli("subscribers", "add", "ana@example.org", "--status", "bounced")
    assert r.exit_code == 2
    assert "'bounced' is not one of" in r.output


def test_import_reports_every_rejected_row(cli, env, workdir: Path) -> None:
    cli("subscribers", "add", "existing@example.org")
    Path("people.csv").write_text(
        "Name,Email\n"
        "Ana,ana@example.org\n"
        "Bad,not-an-address\n"
        "Ana again,ANA@example.org\n"
        "Already,existing@example.org\n"
        "\n"
        "Zofia Kowalczyk,zofia@example.com\n"
        "Nobody,\n",
        encoding="utf-8",
    )
    r = cli("subscribers", "import", "people.csv")
    assert r.exit_code == 1
    assert "Imported 2 subscribers; skipped 2 already on the list; rejected 2." in r.stdout
    assert "line 3: 'not-an-address'" in r.stderr
    assert "line 8: '': the address is empty" in r.stderr
    # the valid rows were kept
    assert count(env, "SELECT count(*) FROM subscriber") == 3
    # importing again adds nothing and rejects the same rows
    r = cli("subscribers", "import", "people.csv")
    assert "Imported 0 subscribers" in r.stdout


def test_import_without_email_column_adds_nothing(cli, env, workdir: Path) -> None:
    Path("people.csv").write_text("name,address\nAna,ana@example.org\n")
    r = cli("subscribers", "import", "people.csv")
    assert r.exit_code == 2
    assert "has no 'email' column" in r.stderr
    assert count(env, "SELECT count(*) FROM subscriber") == 0


def test_import_malformed_csv_adds_nothing(cli, env, workdir: Path) -> None:
    Path("bad.csv").write_bytes(b"email,name\n\xff\xfe\x00garbage\n")
    r = cli("subscribers", "import", "bad.csv")
    assert r.exit_code == 2
    assert "is not UTF-8 text" in r.stderr
    Path("quote.csv").write_text('email,name\nana@example.org,"unterminated\n')
    r = cli("subscribers", "import", "quote.csv")
    assert r.exit_code == 2
    assert "not valid CSV" in r.stderr
    assert count(env, "SELECT count(*) FROM subscriber") == 0
    r = cli("subscribers", "import", "missing.csv")
    assert r.exit_code == 2 and "cannot read missing.csv" in r.stderr


def test_import_pending(cli, env, workdir: Path) -> None:
    Path("p.csv").write_text("email\nana@example.org\n")
    assert cli("subscribers", "import", "p.csv", "--status", "pending").exit_code == 0
    assert "pending" in cli("subscribers", "list").stdout


def test_export_escapes_formulas(cli, env, workdir: Path) -> None:
    cli("subscribers", "add", "ana@example.org", "--name", '=HYPERLINK("http://evil")')
    cli("subscribers", "add", "bo@example.org", "--name", "+44 1234")
    r = cli("subscribers", "export", "out.csv")
    assert r.exit_code == 0
    assert r.stdout.strip() == "Exported 2 subscribers to out.csv."
    rows = list(csv.DictReader(Path("out.csv").read_text(encoding="utf-8").splitlines()))
    assert rows[0]["name"] == '\'=HYPERLINK("http://evil")'
    assert rows[1]["name"] == "'+44 1234"
    r = cli("subscribers", "export", "-")
    assert r.stdout.startswith("email,name,status")


def test_unsubscribe_and_remove(cli, env) -> None:
    cli("subscribers", "add", "ana@example.org", "--name", "Ana")
    r = cli("subscribers", "unsubscribe", "ANA@example.org")
    assert r.exit_code == 0 and "Unsubscribed ANA@example.org." in r.stdout
    r = cli("subscribers", "unsubscribe", "ana@example.org")
    assert "already unsubscribed" in r.stdout
    assert count(env, "SELECT count(*) FROM subscriber_event") == 2  # added, unsubscribed
    r = cli("subscribers", "remove", "ana@example.org", "--yes")
    assert r.exit_code == 0 and "Removed ana@example.org." in r.stdout
    assert count(env, "SELECT count(*) FROM subscriber") == 0
    assert count(env, "SELECT count(*) FROM subscriber_event") == 0  # personal history erased
    # a later add or import cannot silently bring them back
    r = cli("subscribers", "add", "ana@example.org")
    assert r.exit_code == 2 and "suppressed" in r.stderr


def test_unknown_subscriber(cli, env) -> None:
    for cmd in (
        ("unsubscribe", "x@example.org"),
        ("remove", "x@example.org", "--yes"),
        ("confirm", "x@example.org"),
    ):
        r = cli("subscribers", *cmd)
        assert r.exit_code == 1
        assert "Error: no subscriber 'x@example.org'" in r.stderr


def test_confirm_pending(cli, env) -> None:
    cli("subscribers", "add", "ana@example.org", "--status", "pending")
    r = cli("subscribers", "confirm", "ana@example.org")
    assert r.exit_code == 0 and "Confirmed ana@example.org." in r.stdout
    r = cli("subscribers", "confirm", "ana@example.org")
    assert r.exit_code == 2 and "is active, not pending" in r.stderr
