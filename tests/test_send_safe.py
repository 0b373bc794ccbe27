"""The safety rails (send/safe.py): a marked test copy, a dry run to files and the preview files,
none of which records an issue or a delivery."""

from __future__ import annotations

from pathlib import Path

from .helpers.db import rows
from .helpers.seed import seed
from .helpers.smtp import SmtpServer


def test_test_copy_is_marked_and_not_recorded(cli, env, smtp_server: SmtpServer) -> None:
    seed(cli)
    r = cli("send", "--to", "comms@partnership.example.org", "--to", "me@example.org")
    assert r.exit_code == 0, r.output
    assert "Test copy to comms@partnership.example.org: sent" in r.stdout
    assert len(smtp_server.messages) == 2
    msg = smtp_server.messages[0].message
    assert msg["Subject"].startswith("[TEST] Safeguarding News")
    assert rows(env, "SELECT count(*) FROM issue") == [(0,)]
    assert rows(env, "SELECT count(*) FROM delivery") == [(0,)]
    r = cli("send", "--to", "not an address")
    assert r.exit_code == 2 and "--to:" in r.stderr


def test_dry_run_writes_files_and_records_nothing(
    cli, env, smtp_server: SmtpServer, workdir: Path
) -> None:
    seed(cli)
    r = cli("send", "--dry-run", "--out", "outbox")
    assert r.exit_code == 0, r.output
    assert "Dry run: wrote 5 messages to outbox/" in r.stdout
    files = sorted((workdir / "outbox").glob("*.eml"))
    assert len(files) == 5
    assert smtp_server.messages == []
    assert rows(env, "SELECT count(*) FROM issue") == [(0,)]


def test_preview_writes_three_files_and_records_nothing(cli, env, workdir: Path) -> None:
    seed(cli)
    r = cli("preview", "--out", "pv")
    assert r.exit_code == 0, r.output
    assert "Issue 1: Safeguarding News" in r.stdout and "3 items in 2 sections." in r.stdout
    html = (workdir / "pv" / "digest.html").read_text()
    assert "Item 2" in html and "/unsubscribe/preview" in html
    assert (workdir / "pv" / "digest.txt").read_text().startswith("SAFEGUARDING NEWS")
    assert b"multipart/alternative" in (workdir / "pv" / "digest.eml").read_bytes()
    assert rows(env, "SELECT count(*) FROM issue") == [(0,)]


def test_preview_window_options(cli, env, workdir: Path) -> None:
    cli(
        "news",
        "add",
        "--title",
        "Old",
        "--url",
        "https://example.org/old",
        "--published",
        "Thurs 12th Sept 2013",
    )
    assert "nothing to preview" in cli("preview").stdout  # older than lookback_days
    r = cli("preview", "--since", "2013-09-01", "--until", "2013-09-30", "--out", "pv")
    assert r.exit_code == 0, r.output
    assert "1 – 30 September 2013" in (workdir / "pv" / "digest.txt").read_text()
    r = cli("preview", "--since", "2013-09-30", "--until", "2013-09-01")
    assert r.exit_code == 1 and "the period is empty" in r.stderr
