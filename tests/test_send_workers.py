"""Issue #10, leases and workers: several real `digest send` processes on one issue, on
PostgreSQL (and SQLite where it applies), against real SMTP servers on loopback.

Every subscriber gets exactly one copy however slow the server is (a message taking longer
than the lease) and whatever a worker's clock says (one two minutes ahead, under Debian's
libfaketime); after a SIGKILL the only duplicates are the victim's messages in flight; a
cancel stops every claimed row that has not reached MAIL FROM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from digest.demo import free_port

from .helpers.db import postgres_schema
from .helpers.newsletter import FROM, SECRET
from .helpers.sending import (
    bulk_subscribers,
    digest,
    faketime_library,
    finish,
    freeze_issue,
    rows,
    seed,
    statuses,
    wait_until,
)
from .helpers.slow_smtp import start_slow_smtp
from .helpers.smtp import SmtpServer, start_smtp


@pytest.fixture
def database_url(request: pytest.FixtureRequest, workdir: Path) -> Iterator[str]:
    """PostgreSQL unless a test asks for SQLite too (indirect parametrisation)."""
    if getattr(request, "param", "postgres") == "sqlite":
        yield f"sqlite:///{workdir / 'subscribers.db'}"
    else:
        with postgres_schema() as url:
            yield url


BOTH = pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def _kill(*procs: subprocess.Popen[bytes]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def _in_flight(database_url: str) -> bool:
    """Rows of the issue are being sent (claimed and leased)."""
    found = rows(database_url, "SELECT count(*) FROM delivery WHERE status = 'sending'")
    return bool(found and found[0][0])


def _per_rcpt(*servers: SmtpServer) -> dict[str, list[str]]:
    """Recipient -> the Message-IDs of every copy it got, over all the servers."""
    out: dict[str, list[str]] = {}
    for server in servers:
        for m in server.messages:
            out.setdefault(m.rcpt_tos[0], []).append(str(m.message["Message-ID"]))
    return out


# Slow messages and leases -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
def test_messages_slower_than_the_lease_with_send_and_a_worker_go_once_each(
    cli, env, database_url: str
) -> None:
    """Each message takes ~3.1 s (MAIL, RCPT and the final "." answered after 1 s each,
    every read inside smtp_timeout 1.5 s) with a 3 s lease: the leases are renewed while the
    messages are in flight, so the worker never takes a live row."""
    seed(cli, subscribers=6)
    server, controller, _ = start_slow_smtp(mail=1.0, rcpt=1.0, data=1.1)
    over = {
        **env, "DIGEST_SMTP_URL": server.url, "DIGEST_SMTP_TIMEOUT": "1.5",
        "DIGEST_LEASE_SECONDS": "3", "DIGEST_SMTP_CONNECTIONS": "3",
    }  # fmt: skip
    try:
        sender = digest(over, "send", "--yes")
        worker = None
        try:
            # the issue exists and its first messages are in flight: a worker joins
            assert wait_until(lambda: _in_flight(database_url), 30)
            worker = digest(over, "send", "--worker")
            code_s, out_s, err_s = finish(sender, 90)
            code_w, out_w, err_w = finish(worker, 60)
        finally:
            _kill(sender, *([worker] if worker else []))
    finally:
        controller.stop()
    assert code_s == 0, (out_s, err_s)
    assert code_w == 0, (out_w, err_w)
    got = Counter(r for m in server.messages for r in m.rcpt_tos)
    assert got == {f"reader{i}@example.net": 1 for i in range(6)}
    assert rows(database_url, "SELECT status FROM issue") == [("sent",)]
    assert statuses(database_url) == {"sent": 6}


@pytest.mark.slow
@pytest.mark.postgres
def test_a_worker_whose_clock_is_two_minutes_ahead_reclaims_no_live_row(
    cli, env, database_url: str
) -> None:
    if not faketime_library():
        pytest.skip("needs Debian's libfaketime (apt-get install faketime; .ci/run installs it)")
    skewed = subprocess.run(
        [sys.executable, "-c", "import time; print(time.time())"], capture_output=True,
        text=True, check=True, env={**os.environ, "LD_PRELOAD": faketime_library(),
                                    "FAKETIME": "+120s"},
    )  # fmt: skip
    assert 110 < float(skewed.stdout) - time.time() < 130  # the worker's clock really is ahead
    seed(cli, subscribers=20)
    server, controller, _ = start_slow_smtp(data=0.25)
    over = {
        **env, "DIGEST_SMTP_URL": server.url, "DIGEST_SMTP_TIMEOUT": "2",
        "DIGEST_LEASE_SECONDS": "10", "DIGEST_SMTP_CONNECTIONS": "2",
    }  # fmt: skip
    try:
        sender = digest(over, "send", "--yes")
        worker = None
        try:
            assert wait_until(lambda: len(server.messages) >= 2, 30)
            worker = digest(over, "send", "--worker", faketime="+120s")
            code_s, out_s, err_s = finish(sender, 90)
            code_w, out_w, err_w = finish(worker, 60)
        finally:
            _kill(sender, *([worker] if worker else []))
    finally:
        controller.stop()
    assert code_s == 0, (out_s, err_s)
    assert code_w == 0, (out_w, err_w)
    got = Counter(r for m in server.messages for r in m.rcpt_tos)
    assert got == {f"reader{i}@example.net": 1 for i in range(20)}  # no duplicates
    assert rows(database_url, "SELECT status FROM issue") == [("sent",)]


# A worker killed mid-send --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("run", range(6))
def test_three_workers_one_sigkilled_duplicates_only_its_messages_in_flight(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, cli, run: int
) -> None:
    """Three `send --worker` processes on one issue, each through its own SMTP server so
    that every copy names its sender; one is SIGKILLed. Repeated (×6) so that a flake of one
    run in four cannot hide. Everyone gets a copy; a duplicate is only ever a message the
    victim had in flight when it died (sent, its outcome not yet committed: at most two per
    connection, group commit included), with the same Message-ID; the issue completes."""
    connections, n = 2, 450
    with postgres_schema() as url:
        env = {
            "DIGEST_DATABASE_URL": url, "DIGEST_FROM": FROM, "DIGEST_SECRET_KEY": SECRET,
            "DIGEST_BASE_URL": "https://news.partnership.example.org",
            "DIGEST_SMTP_URL": f"smtp://127.0.0.1:{free_port()}",
            "DIGEST_SMTP_CONNECTIONS": str(connections), "DIGEST_LEASE_SECONDS": "2",
            "DIGEST_SMTP_TIMEOUT": "1", "DIGEST_RETRY_WAIT_SECONDS": "0",
        }  # fmt: skip
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        assert cli("init").exit_code == 0
        seed(cli, subscribers=0)
        bulk_subscribers(url, n)
        freeze_issue(url, env)
        started = [start_smtp() for _ in range(3)]
        servers = [s for s, _ in started]
        victim_server = servers[1]
        kill_at = 40 + 50 * run  # messages sent by all three: a different moment each time
        workers: list[subprocess.Popen[bytes]] = []
        killed = threading.Event()

        sent_at_kill: set[str] = set()

        def on_data(rec: object) -> None:
            if sum(len(s.messages) for s in servers) >= kill_at and not killed.is_set():
                killed.set()
                workers[1].kill()
                workers[1].wait()
                # what the victim had recorded when it died (nobody else may take its rows
                # before their lease runs out, seconds from now)
                sent_at_kill.update(str(e) for (e,) in rows(url, SENT_EMAILS))

        victim_server.on_data = on_data
        try:
            for s in servers:
                workers.append(digest({**env, "DIGEST_SMTP_URL": s.url}, "send", "--worker"))
            results = [finish(w, 120) for w in workers]
        finally:
            _kill(*workers)
            for _, controller in started:
                controller.stop()
        assert killed.is_set()
        assert workers[1].returncode == -signal.SIGKILL
        for i in (0, 2):
            assert results[i][0] == 0, results[i]
        per = _per_rcpt(*servers)
        assert len(per) == n
        dupes = {r: ids for r, ids in per.items() if len(ids) > 1}
        # In flight at the kill: sent by the victim (its server has it) but not recorded.
        in_flight = {m.rcpt_tos[0] for m in victim_server.messages} - sent_at_kill
        assert set(dupes) <= in_flight, (dupes, in_flight)
        assert len(in_flight) <= 2 * connections, in_flight
        assert all(len(set(ids)) == 1 and len(ids) == 2 for ids in dupes.values())
        assert rows(url, "SELECT status FROM issue") == [("sent",)]
        assert statuses(url) == {"sent": n}


SENT_EMAILS = (
    "SELECT s.email FROM delivery d JOIN subscriber s ON s.id = d.subscriber_id "
    "WHERE d.status = 'sent'"
)


# Cancel during a live send --------------------------------------------------------------------


@pytest.mark.slow
@BOTH
def test_issues_cancel_during_a_live_send_stops_every_claimed_row(cli, env, database_url) -> None:
    """`issues cancel` from another process while a send is working through a slow server:
    no MAIL FROM after the cancel returned; what was received is what is recorded sent."""
    seed(cli, subscribers=24)
    server, controller, handler = start_slow_smtp(data=0.25)
    over = {**env, "DIGEST_SMTP_URL": server.url, "DIGEST_SMTP_CONNECTIONS": "2"}
    try:
        sender = digest(over, "send", "--yes")
        try:
            assert wait_until(lambda: len(server.messages) >= 4, 30)
            cancel = subprocess.run(
                [sys.executable, "-m", "digest", "issues", "cancel", "1", "--yes"],
                env={**os.environ, **over}, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            cancelled_at = time.time()
            assert cancel.returncode == 0, cancel.stderr
            code, out, err = finish(sender, 60)
        finally:
            _kill(sender)
    finally:
        controller.stop()
    after = [t for t in handler.mail_times if t > cancelled_at]
    assert after == [], f"{len(after)} messages started after the cancel returned"
    assert code is not None and code != 75, (code, out, err)
    got = Counter(r for m in server.messages for r in m.rcpt_tos)
    assert set(got.values()) == {1}
    recorded = statuses(database_url)
    assert recorded.get("sent", 0) == len(got) < 24
    assert recorded.get("sent", 0) + recorded.get("skipped", 0) == 24
    assert rows(database_url, "SELECT status FROM issue") == [("cancelled",)]
