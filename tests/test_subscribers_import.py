"""`digest subscribers import` of CSV files: every rejected row reported, valid rows kept, nothing
added from a file without an email column or that is not CSV."""

from __future__ import annotations

from pathlib import Path

from .helpers.db import count


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
