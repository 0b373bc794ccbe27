"""Fault tests of the send engine: real SMTP servers on loopback with scripted replies and
injected network faults, the real CLI (in-process or in a subprocess), on SQLite and on
PostgreSQL. Nobody may be skipped; duplicates only for messages in flight at a crash, with
the Message-ID of the first copy; nothing marked failed or finished early."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections import Counter
from pathlib import Path

import pytest

from digest.db import make_engine
from digest.send.run import JOBS_PER_CONNECTION

from .helpers.db import (
    database_url_on_both,  # noqa: F401 (the database_url fixture: both databases)
    postgres_schema,
    rows,
)
from .helpers.faults import FaultProxy
from .helpers.process import digest_process
from .helpers.seed import seed
from .helpers.sending import bulk_subscribers
from .helpers.smtp import SmtpServer


@pytest.fixture
def waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """One run waits for due retries (as a long-running send would), with short delays."""
    monkeypatch.setenv("DIGEST_RETRY_WAIT_SECONDS", "30")
    monkeypatch.setenv("DIGEST_RETRY_BASE_SECONDS", "0.1")


def copies(server: SmtpServer) -> Counter[str]:
    return Counter(r for m in server.messages for r in m.rcpt_tos)


def test_451_for_some_recipients_then_all_delivered_once(cli, env, smtp_server, waiting) -> None:
    seed(cli, subscribers=30, items=1)
    tried: Counter[str] = Counter()

    def reply(rcpt: str, data: bytes) -> str | None:
        tried[rcpt] += 1
        if int(rcpt[6:].split("@")[0]) % 10 == 3 and tried[rcpt] == 1:
            return "451 4.7.1 Greylisted, try again"
        return None

    smtp_server.reply = reply
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    assert "30 sent, 0 failed, 0 deferred" in r.stdout
    got = copies(smtp_server)
    assert len(got) == 30 and set(got.values()) == {1}
    assert sorted(k for k, v in tried.items() if v == 2) == [
        "reader13@example.net",
        "reader23@example.net",
        "reader3@example.net",
    ]
    assert rows(env, "SELECT status FROM issue") == [("sent",)]


def test_550_fails_once_and_is_never_retried(cli, env, smtp_server, waiting) -> None:
    seed(cli, subscribers=10, items=1)
    tried: Counter[str] = Counter()
    bad = {"reader2@example.net", "reader7@example.net"}

    def reply(rcpt: str, data: bytes) -> str | None:
        tried[rcpt] += 1
        return "550 5.1.1 User unknown" if rcpt in bad else None

    smtp_server.reply = reply
    r = cli("send", "--yes")
    assert r.exit_code == 65, r.output  # complete, with permanent failures: says so
    assert "8 sent, 2 failed, 0 deferred" in r.stdout
    assert "2 addresses refused it for good: reader" in r.stderr
    assert "`digest issues show 1` has the replies" in r.stderr
    assert all(tried[a] == 1 for a in bad)
    assert set(copies(smtp_server)) == {f"reader{i}@example.net" for i in range(10)} - bad
    assert rows(env, "SELECT status FROM issue") == [("sent_with_failures",)]
    # a later send does not try them again
    assert cli("send", "--yes").exit_code == 0
    assert all(tried[a] == 1 for a in bad)


def test_line_dropped_after_final_dot_is_retried_with_same_message_id(
    cli, env, smtp_server, waiting, monkeypatch
) -> None:
    seed(cli, subscribers=6, items=1)
    proxy = FaultProxy(
        smtp_server.port,
        lambda n, seen: "drop-after-dot" if n == 1 and seen.count(b"\r\n.\r\n") >= 3 else None,
    )
    monkeypatch.setenv("DIGEST_SMTP_URL", proxy.url)
    try:
        r = cli("send", "--yes")
    finally:
        proxy.close()
    assert r.exit_code == 0, r.output
    assert proxy.faults == ["drop-after-dot"]
    got = copies(smtp_server)
    assert len(got) == 6
    (twice,) = [rcpt for rcpt, n in got.items() if n == 2]  # exactly the one in flight
    ids = {m.message["Message-ID"] for m in smtp_server.messages if m.rcpt_tos == [twice]}
    assert len(ids) == 1
    assert "6 sent, 0 failed" in r.stdout


def test_reset_in_the_middle_of_data_is_retried(
    cli, env, smtp_server, waiting, monkeypatch
) -> None:
    seed(cli, subscribers=5, items=1)

    def rule(n: int, seen: bytes) -> str | None:
        if n == 1:
            # the second message: reset as soon as its DATA has started
            parts = seen.upper().split(b"DATA\r\n")
            if len(parts) >= 3 and parts[2]:
                return "reset-mid-data"
        return None

    proxy = FaultProxy(smtp_server.port, rule)
    monkeypatch.setenv("DIGEST_SMTP_URL", proxy.url)
    try:
        r = cli("send", "--yes")
    finally:
        proxy.close()
    assert r.exit_code == 0, r.output
    assert proxy.faults == ["reset-mid-data"]
    got = copies(smtp_server)
    assert len(got) == 5 and set(got.values()) == {1}


def test_421_at_connect_for_a_while_backs_off_then_completes(
    cli, env, smtp_server, waiting, monkeypatch
) -> None:
    """Later connections answer 421 at the greeting for a while (a relay allowing fewer
    connections than smtp_connections): the run goes on with the connection that works, and
    the refused one rests before it tries again instead of spinning."""
    seed(cli, subscribers=5, items=1)
    monkeypatch.setenv("DIGEST_SMTP_CONNECTIONS", "2")
    proxy = FaultProxy(smtp_server.port, lambda n, seen: "greet-421" if 2 <= n <= 4 else None)
    monkeypatch.setenv("DIGEST_SMTP_URL", proxy.url)
    try:
        r = cli("send", "--yes")
    finally:
        proxy.close()
    assert r.exit_code == 0, r.output
    assert 1 <= proxy.faults.count("greet-421") <= 3
    got = copies(smtp_server)
    assert len(got) == 5 and set(got.values()) == {1}
    assert rows(env, "SELECT status, count(*) FROM delivery GROUP BY status") == [("sent", 5)]
    assert proxy.connections <= 8  # backed off: no tight reconnect loop


def test_server_down_for_good_stops_with_75_and_keeps_the_queue(
    cli, env, smtp_server, monkeypatch
) -> None:
    seed(cli, subscribers=4, items=1)
    monkeypatch.setenv("DIGEST_SMTP_DOWN_SECONDS", "1")
    proxy = FaultProxy(smtp_server.port, lambda n, seen: "greet-421" if n >= 2 else None)
    monkeypatch.setenv("DIGEST_SMTP_URL", proxy.url)
    smtp_server.reply = lambda rcpt, data: (
        "421 4.3.2 Shutting down" if rcpt == "reader1@example.net" else None
    )
    try:
        r = cli("send", "--yes")
    finally:
        proxy.close()
    assert r.exit_code == 75, r.output
    assert "Error: stopped:" in r.stderr
    statuses = dict(rows(env, "SELECT status, count(*) FROM delivery GROUP BY status"))
    assert statuses.get("failed", 0) == 0 and statuses.get("sending", 0) == 0
    assert rows(env, "SELECT status FROM issue") == [("sending",)]  # not finished early
    # when the server is back, the next run completes it
    monkeypatch.setenv("DIGEST_SMTP_URL", smtp_server.url)
    smtp_server.reply = None
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    assert len(copies(smtp_server)) == 4 and set(copies(smtp_server).values()) == {1}


def test_454_bursts_slow_the_run_and_fail_nobody(cli, env, smtp_server, waiting) -> None:
    seed(cli, subscribers=20, items=1)
    calls = Counter[str]()
    lock = threading.Lock()

    def reply(rcpt: str, data: bytes) -> str | None:
        with lock:
            calls["n"] += 1
            n = calls["n"]
        return "454 4.7.0 Temporary throttling, slow down" if n % 4 == 0 and n < 30 else None

    smtp_server.reply = reply
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    assert "20 sent, 0 failed, 0 deferred" in r.stdout
    got = copies(smtp_server)
    assert len(got) == 20 and set(got.values()) == {1}
    assert rows(env, "SELECT status FROM issue") == [("sent",)]


@pytest.mark.slow
def test_sigkill_at_several_points_of_a_2000_send(cli, env, smtp_server, monkeypatch) -> None:
    """Killed three times mid-send, rerun each time: everyone has at least one copy, and the
    only duplicates are messages that were in flight at a kill, each with one Message-ID."""
    connections = 4
    # On PostgreSQL a dead sender's rows wait for their lease to run out before a rerun
    # takes them; keep it short here.
    env = {
        **env,
        "DIGEST_SMTP_CONNECTIONS": str(connections),
        "DIGEST_LEASE_SECONDS": "2",
        "DIGEST_SMTP_TIMEOUT": "1",
    }
    seed(cli, subscribers=0, items=1)
    bulk_subscribers(env["DIGEST_DATABASE_URL"], 2000)
    kill_at = [150, 700, 1300]
    proc: list[subprocess.Popen[bytes]] = []
    lock = threading.Lock()

    def on_data(rec) -> None:
        with lock:
            if (
                kill_at
                and len(smtp_server.messages) >= kill_at[0]
                and proc
                and proc[-1].poll() is None
            ):
                kill_at.pop(0)
                proc[-1].kill()

    smtp_server.on_data = on_data
    kills = 0
    for _ in range(6):
        proc.append(digest_process(env, "send", "--yes"))
        out, err = proc[-1].communicate(timeout=240)
        if proc[-1].returncode == -signal.SIGKILL:
            kills += 1
            continue
        assert proc[-1].returncode == 0, err.decode()
        break
    assert kills == 3
    per: dict[str, list[str]] = {}
    for m in smtp_server.messages:
        per.setdefault(m.rcpt_tos[0], []).append(m.message["Message-ID"])
    assert len(per) == 2000
    dupes = {r: ids for r, ids in per.items() if len(ids) > 1}
    # at most the messages in flight at each kill: the jobs handed out and not yet recorded
    # (accepted while their connection went on with the next, or written just before the kill
    # and delivered by the kernel after it), at most JOBS_PER_CONNECTION a connection
    assert len(dupes) <= kills * connections * JOBS_PER_CONNECTION, len(dupes)
    assert all(len(set(ids)) == 1 for ids in dupes.values())
    assert rows(env, "SELECT status FROM issue") == [("sent",)]
    assert rows(env, "SELECT status, count(*) FROM delivery GROUP BY status") == [("sent", 2000)]


@pytest.mark.slow
def test_two_overlapping_scheduled_runs_make_one_issue(cli, env, smtp_server) -> None:
    seed(cli, subscribers=0, items=2)
    bulk_subscribers(env["DIGEST_DATABASE_URL"], 300)
    a = digest_process(env, "send", "--scheduled")
    b = digest_process(env, "send", "--scheduled")
    outs = [p.communicate(timeout=120) for p in (a, b)]
    codes = sorted(p.returncode for p in (a, b))
    # on SQLite the second waits its turn (75: try again later) or finds the work done (0)
    assert codes in ([0, 0], [0, 75]), outs
    assert rows(env, "SELECT count(*) FROM issue") == [(1,)]
    got = copies(smtp_server)
    assert len(got) == 300 and set(got.values()) == {1}
    # rerun after completion: nothing to do, no SMTP connection (the URL points nowhere)
    from digest.demo import free_port

    again = digest_process(
        {**env, "DIGEST_SMTP_URL": f"smtp://127.0.0.1:{free_port()}"}, "send", "--scheduled"
    )
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err.decode()
    assert b"is already sent; nothing to do." in out


@pytest.mark.slow
@pytest.mark.postgres
def test_three_postgres_workers_one_killed(
    workdir: Path, smtp_server: SmtpServer, monkeypatch, cli
) -> None:
    """Three `digest send --worker` processes share one issue of 5,000 on PostgreSQL; one is
    killed with SIGKILL midway. Everyone gets a copy; the only duplicates are that worker's
    in-flight messages (same Message-ID); the issue completes."""
    with postgres_schema() as url:
        env = {
            "DIGEST_DATABASE_URL": url, "DIGEST_SMTP_URL": smtp_server.url,
            "DIGEST_FROM": "News <news@partnership.example.org>", "DIGEST_SECRET_KEY": "k" * 20 + "0123456789abcdef",
            "DIGEST_BASE_URL": "https://news.partnership.example.org",
            "DIGEST_SMTP_CONNECTIONS": "2", "DIGEST_LEASE_SECONDS": "8", "DIGEST_SMTP_TIMEOUT": "4",
            # a reply slowed by a loaded machine is retried within the run, not left deferred
            "DIGEST_RETRY_BASE_SECONDS": "0.2", "DIGEST_RETRY_WAIT_SECONDS": "60",
        }  # fmt: skip
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        assert cli("init").exit_code == 0
        seed(cli, subscribers=0, items=1)
        bulk_subscribers(env["DIGEST_DATABASE_URL"], 5000)
        # Freeze the issue without sending it: the workers do all the sending.
        from digest.config_load import load_settings
        from digest.db import session_scope
        from digest.send.plan import plan_send, start_issue

        settings = load_settings(environ=dict(os.environ)).settings
        engine = make_engine(url)
        with session_scope(engine) as session:
            plan = plan_send(session, settings)
            assert plan is not None
            start_issue(session, plan)
        engine.dispose()

        workers = [digest_process(env, "send", "--worker") for _ in range(3)]
        victim = workers[1]
        killed = threading.Event()

        def on_data(rec) -> None:
            if len(smtp_server.messages) >= 1500 and not killed.is_set():
                killed.set()
                victim.kill()

        smtp_server.on_data = on_data
        results = [w.communicate(timeout=240) for w in workers]
        assert killed.is_set()
        assert victim.returncode == -signal.SIGKILL
        for w, (_out, err) in zip(workers, results, strict=True):
            if w is not victim:
                assert w.returncode == 0, err.decode()
        per: dict[str, list[str]] = {}
        for m in smtp_server.messages:
            per.setdefault(m.rcpt_tos[0], []).append(m.message["Message-ID"])
        assert len(per) == 5000
        dupes = {r: ids for r, ids in per.items() if len(ids) > 1}
        assert len(dupes) <= 2 * 2  # the victim's connections, each with one in flight + one queued
        assert all(len(set(ids)) == 1 for ids in dupes.values())
        assert rows(env, "SELECT status FROM issue") == [("sent",)]
        assert rows(env, "SELECT status, count(*) FROM delivery GROUP BY status") == [
            ("sent", 5000)
        ]


@pytest.mark.slow
def test_sigterm_stops_after_the_messages_in_flight_and_the_next_run_resumes(
    cli, env, smtp_server
) -> None:
    env = {**env, "DIGEST_SMTP_CONNECTIONS": "3"}
    seed(cli, subscribers=0, items=1)
    bulk_subscribers(env["DIGEST_DATABASE_URL"], 300)
    proc: list[subprocess.Popen[bytes]] = []

    def on_data(rec) -> None:
        if len(smtp_server.messages) == 60 and proc:
            proc[0].send_signal(signal.SIGTERM)

    smtp_server.on_data = on_data
    proc.append(digest_process(env, "send", "--yes"))
    out, err = proc[0].communicate(timeout=120)
    assert proc[0].returncode == 130, err.decode()
    assert b"Run `digest send` again to resume it." in err
    first = len(smtp_server.messages)
    assert 60 <= first < 300
    statuses = dict(rows(env, "SELECT status, count(*) FROM delivery GROUP BY status"))
    assert "sending" not in statuses  # everything handed back or recorded
    assert statuses["sent"] == first
    smtp_server.on_data = None
    resumed = digest_process(env, "send", "--yes")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err.decode()
    got = copies(smtp_server)
    assert len(got) == 300 and set(got.values()) == {1}
