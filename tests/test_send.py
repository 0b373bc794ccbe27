"""`digest send` against a real SMTP server on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from digest.db import make_engine

from .helpers.smtp import SmtpServer, start_smtp


def seed(cli, subscribers: int = 5, items: int = 3) -> None:
    now = datetime.now(UTC)
    for i in range(subscribers):
        r = cli("subscribers", "add", f"reader{i}@example.net", "--name", f"Reader {i}")
        assert r.exit_code == 0, r.output
    for i in range(items):
        r = cli("news", "add", "--title", f"Item {i}", "--url", f"https://example.org/n/{i}",
                "--summary", f"<p>Summary {i}</p>", "--category", ["Procedures", "Training"][i % 2],
                "--published", (now - timedelta(hours=i + 1)).isoformat())  # fmt: skip
        assert r.exit_code == 0, r.output


def rows(env: dict[str, str], sql: str) -> list[tuple]:
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    with engine.connect() as c:
        out = [tuple(r) for r in c.execute(sa.text(sql))]
    engine.dispose()
    return out


def test_send_delivers_one_message_to_each_active_subscriber(
    cli, env, smtp_server: SmtpServer
) -> None:
    seed(cli)
    cli("subscribers", "add", "pending@example.net", "--status", "pending")
    cli("subscribers", "add", "gone@example.net")
    cli("subscribers", "unsubscribe", "gone@example.net")
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    assert "Issue 1: Safeguarding News:" in r.stdout and "(3 items) to 5 subscribers." in r.stdout
    assert "Issue 1: 5 sent, 0 failed, 0 deferred, 0 skipped, 0 not yet tried." in r.stdout
    assert "Issue 1 is complete." in r.stdout
    received = smtp_server.by_rcpt()
    assert sorted(received) == [f"reader{i}@example.net" for i in range(5)]
    assert all(len(v) == 1 for v in received.values())
    ids, urls = set(), set()
    for rcpt, (m,) in received.items():
        msg = m.message
        assert m.mail_from == "news@partnership.example.org"
        assert msg["To"].addresses[0].addr_spec == rcpt
        ids.add(msg["Message-ID"])
        unsub = msg["List-Unsubscribe"]
        assert unsub.startswith("<https://news.partnership.example.org/unsubscribe/")
        urls.add(unsub)
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        body = msg.get_body(("plain",)).get_content()
        assert "Item 0" in body and "DIGESTx" not in body and "{{" not in body
    assert len(ids) == 5 and len(urls) == 5
    assert rows(env, "SELECT status, count(*) FROM delivery GROUP BY status") == [("sent", 5)]
    assert rows(env, "SELECT number, status FROM issue") == [(1, "sent")]
    # A second send has nothing new: no issue, no message.
    r = cli("send", "--yes")
    assert r.exit_code == 0
    assert "No new items since the last issue; nothing to send." in r.stdout
    assert len(smtp_server.messages) == 5
    assert rows(env, "SELECT count(*) FROM issue") == [(1,)]


def test_new_items_make_a_second_issue_with_only_new_items(
    cli, env, smtp_server: SmtpServer
) -> None:
    seed(cli, subscribers=2, items=2)
    assert cli("send", "--yes").exit_code == 0
    r = cli("news", "add", "--title", "Fresh item", "--url", "https://example.org/fresh")
    assert r.exit_code == 0
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    assert "Issue 2:" in r.stdout and "(1 item)" in r.stdout
    second = [
        m
        for m in smtp_server.messages
        if "Fresh item" in m.message.get_body(("plain",)).get_content()
    ]
    assert len(second) == 2
    assert "Item 0" not in second[0].message.get_body(("plain",)).get_content()


def test_an_item_that_arrives_late_with_an_older_date_is_in_the_next_issue(
    cli, env, smtp_server: SmtpServer
) -> None:
    seed(cli, subscribers=1, items=1)
    assert cli("send", "--yes").exit_code == 0
    # fetched after the issue went out, but dated before it (a slow feed)
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    cli(
        "news",
        "add",
        "--title",
        "Late but new",
        "--url",
        "https://example.org/late",
        "--published",
        two_days_ago,
    )
    # far older items that arrive now (a new feed's archive) stay out
    cli(
        "news",
        "add",
        "--title",
        "Archive",
        "--url",
        "https://example.org/old",
        "--published",
        "2013-09-12",
    )
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    assert "(1 item) to 1 subscriber." in r.stdout
    body = smtp_server.messages[-1].message.get_body(("plain",)).get_content()
    assert "Late but new" in body and "Archive" not in body


def test_nothing_to_send(cli, env, smtp_server: SmtpServer) -> None:
    cli("subscribers", "add", "a@example.net")
    r = cli("send", "--yes")
    assert r.exit_code == 0
    assert "nothing to send" in r.stdout
    assert smtp_server.messages == []


def test_no_active_subscribers_is_an_error_and_creates_nothing(
    cli, env, smtp_server: SmtpServer
) -> None:
    seed(cli, subscribers=0)
    r = cli("send", "--yes")
    assert r.exit_code == 2
    assert "Error: there are no active subscribers" in r.stderr
    assert rows(env, "SELECT count(*) FROM issue") == [(0,)]


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


def test_refused_connection_changes_nothing(cli, env, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(cli)
    from digest.demo import free_port

    monkeypatch.setenv("DIGEST_SMTP_URL", f"smtp://127.0.0.1:{free_port()}")
    r = cli("send", "--yes")
    assert r.exit_code == 75
    assert "Error: cannot connect to smtp://127.0.0.1:" in r.stderr
    assert "Traceback" not in r.output
    assert rows(env, "SELECT count(*) FROM issue") == [(0,)]


def test_server_refusing_at_greeting(cli, env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that answers 554 to the connection: a clear temporary error, nothing frozen."""
    import socket

    from digest.demo import free_port

    port = free_port()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen()

    def refuse() -> None:
        conn, _ = listener.accept()
        conn.sendall(b"554 5.7.1 No SMTP service here\r\n")
        conn.close()

    t = threading.Thread(target=refuse, daemon=True)
    t.start()
    seed(cli)
    monkeypatch.setenv("DIGEST_SMTP_URL", f"smtp://127.0.0.1:{port}")
    r = cli("send", "--yes")
    listener.close()
    assert r.exit_code == 75
    assert "refused the connection: 554 5.7.1 No SMTP service here" in r.stderr
    assert rows(env, "SELECT count(*) FROM issue") == [(0,)]


def test_permanent_and_temporary_failures(cli, env, smtp_server: SmtpServer, monkeypatch) -> None:
    monkeypatch.setenv("DIGEST_RETRY_BASE_SECONDS", "600")  # the retry is not due in this run
    seed(cli, subscribers=4)
    attempts: Counter[str] = Counter()

    def reply(rcpt: str, data: bytes) -> str | None:
        attempts[rcpt] += 1
        if rcpt == "reader1@example.net":
            return "550 5.1.1 No such mailbox"
        if rcpt == "reader2@example.net" and attempts[rcpt] == 1:
            return "451 4.3.0 Try again later"
        return None

    smtp_server.reply = reply
    r = cli("send", "--yes")
    assert r.exit_code == 75, r.output
    assert "2 sent, 1 failed, 1 deferred" in r.stdout
    assert "run `digest send` again after" in r.stderr
    r = cli("issues", "show", "1")
    assert "reader1@example.net  failed    1         550 5.1.1 No such mailbox" in r.stdout
    assert "reader2@example.net  deferred  1         451 4.3.0 Try again later" in r.stdout
    # Later (we move the retry time instead of waiting): the deferred one is retried once,
    # the failed one never again.
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    with engine.begin() as c:
        c.execute(
            sa.text(
                "UPDATE delivery SET next_attempt_at = '2000-01-01 00:00:00' WHERE status='deferred'"
            )
        )
    engine.dispose()
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    assert "Retrying the deferred deliveries of issue 1" in r.stdout
    assert "3 sent, 1 failed, 0 deferred" in r.stdout
    assert attempts == {
        "reader0@example.net": 1,
        "reader1@example.net": 1,
        "reader2@example.net": 2,
        "reader3@example.net": 1,
    }
    assert rows(env, "SELECT status FROM issue") == [("sent_with_failures",)]
    r = cli("issues", "list")
    assert "sent_with_failures" in r.stdout


def test_unsubscribed_during_send_is_skipped(cli, env, smtp_server: SmtpServer) -> None:
    seed(cli, subscribers=3)
    # freeze the issue, then unsubscribe someone before their turn
    engine = make_engine(env["DIGEST_DATABASE_URL"])

    def on_data(rec) -> None:
        if rec.rcpt_tos == ["reader0@example.net"]:
            with engine.begin() as c:
                c.execute(
                    sa.text(
                        "UPDATE subscriber SET status='unsubscribed' WHERE email='reader2@example.net'"
                    )
                )

    smtp_server.on_data = on_data
    r = cli("send", "--yes")
    engine.dispose()
    assert r.exit_code == 0, r.output
    # reader2 was claimed in the same batch as reader0, so the check happens per message
    assert sorted(smtp_server.by_rcpt()) in (
        ["reader0@example.net", "reader1@example.net"],
        ["reader0@example.net", "reader1@example.net", "reader2@example.net"],
    )


def _digest(env_over: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "digest", *args],
        env={**os.environ, **env_over},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_send_resumes_without_duplicates(
    cli, env, smtp_server: SmtpServer, sig
) -> None:
    """Ctrl-C or SIGTERM: the message in flight is finished and recorded, the next run resumes;
    nobody gets two copies and nobody is skipped."""
    seed(cli, subscribers=60, items=1)
    proc: list[subprocess.Popen[bytes]] = []

    def on_data(rec) -> None:
        if len(smtp_server.messages) == 20 and proc:
            proc[0].send_signal(sig)

    smtp_server.on_data = on_data
    proc.append(_digest(env, "send", "--yes"))
    out, err = proc[0].communicate(timeout=60)
    assert proc[0].returncode == 130, err.decode()
    assert b"Run `digest send` again to resume it." in err
    first = len(smtp_server.messages)
    assert 20 <= first < 60
    smtp_server.on_data = None
    resumed = _digest(env, "send", "--yes")
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err.decode()
    assert b"Resuming issue 1" in out
    counts = Counter(r for m in smtp_server.messages for r in m.rcpt_tos)
    assert len(counts) == 60 and set(counts.values()) == {1}
    assert rows(env, "SELECT status FROM issue") == [("sent",)]


@pytest.mark.slow
def test_killed_send_resends_only_the_message_in_flight(cli, env, smtp_server: SmtpServer) -> None:
    """SIGKILL while the server holds a message: that one delivery may arrive twice, with the
    same Message-ID; everyone else exactly once."""
    seed(cli, subscribers=40, items=1)
    proc: list[subprocess.Popen[bytes]] = []
    killed = threading.Event()

    def on_data(rec) -> None:
        if len(smtp_server.messages) == 15 and not killed.is_set():
            killed.set()
            proc[0].kill()
            proc[0].wait()

    smtp_server.on_data = on_data
    proc.append(_digest(env, "send", "--yes"))
    proc[0].communicate(timeout=60)
    assert killed.is_set()
    smtp_server.on_data = None
    resumed = _digest(env, "send", "--yes")
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err.decode()
    per_rcpt: dict[str, list[str]] = {}
    for m in smtp_server.messages:
        per_rcpt.setdefault(m.rcpt_tos[0], []).append(m.message["Message-ID"])
    assert len(per_rcpt) == 40
    dupes = {r: ids for r, ids in per_rcpt.items() if len(ids) > 1}
    assert len(dupes) <= 1
    for ids in dupes.values():
        assert len(set(ids)) == 1  # the same Message-ID: a receiver can tell it is a duplicate


def test_second_sender_on_the_same_database_stops(cli, env, smtp_server: SmtpServer) -> None:
    from digest.send.lock import send_lock

    seed(cli, subscribers=2)
    with send_lock(env["DIGEST_DATABASE_URL"]):
        r = cli("send", "--yes")
    assert r.exit_code == 75  # EX_TEMPFAIL: cron may try again later
    assert "another `digest send` (pid" in r.stderr and "this one is stopping" in r.stderr
    assert smtp_server.messages == []
    assert cli("send", "--yes").exit_code == 0


def test_issues_show_unknown(cli, env) -> None:
    r = cli("issues", "show", "9")
    assert r.exit_code == 1 and "Error: no issue 9" in r.stderr
    assert "No issues yet" in cli("issues", "list").stdout


def test_starttls_with_private_ca(cli, env, monkeypatch, tmp_path: Path) -> None:
    """STARTTLS verifies the certificate; a private CA is trusted through smtp_ca_file."""
    import ssl

    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    server, controller = start_smtp(tls_context=ctx, require_starttls=True)
    try:
        seed(cli, subscribers=1)
        monkeypatch.setenv("DIGEST_SMTP_URL", f"smtp+starttls://127.0.0.1:{server.port}")
        r = cli("send", "--to", "me@example.org")
        assert r.exit_code == 1
        assert "certificate of 127.0.0.1 could not be verified" in r.stderr
        assert "smtp_ca_file" in r.stderr
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        monkeypatch.setenv("DIGEST_SMTP_CA_FILE", str(tmp_path / "ca.pem"))
        r = cli("send", "--to", "me@example.org")
        assert r.exit_code == 0, r.output
        assert len(server.messages) == 1
    finally:
        controller.stop()


def test_plain_server_without_starttls_is_refused(
    cli, env, smtp_server: SmtpServer, monkeypatch
) -> None:
    seed(cli, subscribers=1)
    monkeypatch.setenv("DIGEST_SMTP_URL", f"smtp+starttls://127.0.0.1:{smtp_server.port}")
    r = cli("send", "--to", "me@example.org")
    assert r.exit_code == 1
    assert "does not offer STARTTLS" in r.stderr
    assert smtp_server.messages == []


def test_login_is_used_and_password_never_printed(cli, env, monkeypatch) -> None:
    from aiosmtpd.smtp import AuthResult

    def auth(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"digest" and auth_data.password == b"s3cret-pw"
        return AuthResult(success=ok, handled=False)

    server, controller = start_smtp(authenticator=auth, auth_require_tls=False)
    try:
        seed(cli, subscribers=1)
        monkeypatch.setenv("DIGEST_SMTP_URL", f"smtp://digest@127.0.0.1:{server.port}")
        monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "wrong-pw")
        r = cli("send", "--to", "me@example.org")
        assert r.exit_code == 3
        assert "refused the login for user 'digest'" in r.stderr
        assert "wrong-pw" not in r.output
        monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "s3cret-pw")
        r = cli("send", "--to", "me@example.org")
        assert r.exit_code == 0, r.output
        assert "s3cret-pw" not in r.output
        assert len(server.messages) == 1
    finally:
        controller.stop()
