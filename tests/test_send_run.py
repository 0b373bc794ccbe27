"""The send loop (send/run.py) through `digest send`, against a real SMTP server on loopback:
one message per active subscriber, permanent and temporary failures, an unsubscribe during the
send, and interrupted or killed sends that resume without duplicates."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections import Counter

import pytest
import sqlalchemy as sa

from digest.db import make_engine

from .helpers.db import rows
from .helpers.process import digest_process
from .helpers.seed import seed
from .helpers.smtp import SmtpServer


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


def test_no_active_subscribers_is_an_error_and_creates_nothing(
    cli, env, smtp_server: SmtpServer
) -> None:
    seed(cli, subscribers=0)
    r = cli("send", "--yes")
    assert r.exit_code == 2
    assert "Error: there are no active subscribers" in r.stderr
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
    assert "sent, 1 failed" in r.stdout  # people's words for sent_with_failures


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
    # reader2 was claimed in the same batch as reader0: their status is read again right
    # before MAIL FROM (the unsubscribe was committed by another connection meanwhile)
    assert sorted(smtp_server.by_rcpt()) == ["reader0@example.net", "reader1@example.net"]
    reasons = dict(
        rows(env, "SELECT s.email, d.last_reply FROM delivery d JOIN subscriber s "
                  "ON s.id = d.subscriber_id WHERE d.status = 'skipped'")
    )  # fmt: skip
    assert reasons == {"reader2@example.net": "subscriber unsubscribed"}


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
    proc.append(digest_process(env, "send", "--yes"))
    out, err = proc[0].communicate(timeout=60)
    assert proc[0].returncode == 130, err.decode()
    assert b"Run `digest send` again to resume it." in err
    first = len(smtp_server.messages)
    assert 20 <= first < 60
    smtp_server.on_data = None
    resumed = digest_process(env, "send", "--yes")
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
    proc.append(digest_process(env, "send", "--yes"))
    proc[0].communicate(timeout=60)
    assert killed.is_set()
    smtp_server.on_data = None
    resumed = digest_process(env, "send", "--yes")
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
