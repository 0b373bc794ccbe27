"""Issue #10 and #9: the send policy without a database, the send loop without SMTP.

The pure parts (RetryPolicy, CircuitBreaker) are tested directly (the Pacer in
test_send_pacing.py);
the loop (DeliveryRun) is driven with an in-memory Store (tests/helpers/memstore.py) and a
scripted Sender, and, for an exception inside a connection thread, with the real SqlStore
on a SQLite file. These are the one place a sender without SMTP is right: the issue asks that
the loop can be driven without it."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from digest.compose.recipients import Recipients, compose_issue
from digest.config import Settings
from digest.config_load import load_settings
from digest.db import make_engine
from digest.errors import DigestError, SenderRejected
from digest.send.mailer import SendResult
from digest.send.pacing import Pacer
from digest.send.policy import CircuitBreaker, RetryPolicy, RunOptions, Update
from digest.send.run import DeliveryRun, SendProgress
from digest.send.store import SqlStore

from .helpers.memstore import LATER, OK, UNKNOWN, MemoryStore, ScriptedSender
from .helpers.newsletter import FROM, SECRET
from .helpers.sending import freeze_issue, rows, seed

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


# The policy: a reply -> the delivery's next state ------------------------------------------


def test_retry_policy_sent_failed_deferred_with_growing_delays_and_a_lifetime() -> None:
    policy = RetryPolicy(timedelta(hours=72), base_seconds=60)
    sent = policy.update(7, 0, None, OK, NOW)
    assert (sent.status, sent.attempts, sent.sent_at, sent.first_attempt_at) == (
        "sent",
        1,
        NOW,
        NOW,
    )
    failed = policy.update(7, 2, NOW - timedelta(hours=1), UNKNOWN, NOW)
    assert (failed.status, failed.attempts, failed.reply) == ("failed", 3, UNKNOWN.reply)
    assert failed.first_attempt_at == NOW - timedelta(hours=1)  # the first attempt is kept
    delays = [
        policy.update(7, attempts, NOW, LATER, NOW).next_attempt_at - NOW  # type: ignore[operator]
        for attempts in range(8)
    ]
    assert delays[:4] == [timedelta(seconds=s) for s in (60, 120, 240, 480)]
    assert max(delays) == timedelta(hours=1)  # capped
    assert all(policy.update(7, a, NOW, LATER, NOW).status == "deferred" for a in range(8))
    gave_up = policy.update(7, 30, NOW - timedelta(hours=72), LATER, NOW)
    assert gave_up.status == "failed" and gave_up.reply.startswith("gave up after 31 attempts: 451")


def test_circuit_breaker_holds_a_streak_and_releases_it_on_a_success() -> None:
    breaker = CircuitBreaker(3)
    fail = [Update(i, "failed", 1, "550 5.7.1 relay denied", NOW) for i in range(5)]
    assert breaker.permanent(fail[0]) == [] and breaker.permanent(fail[1]) == []
    assert not breaker.tripped
    assert breaker.success() == fail[:2]  # a success: they were real failures
    for u in fail[2:5]:
        assert breaker.permanent(u) == []
    assert breaker.tripped and breaker.held == fail[2:5]
    assert breaker.last_reply == "550 5.7.1 relay denied"
    never = CircuitBreaker(0)
    assert never.permanent(fail[0]) == [fail[0]] and not never.tripped


# The loop on an in-memory store -------------------------------------------------------------


def _settings(**over: Any) -> Settings:
    return Settings.model_validate(
        {"from": FROM, "base_url": "https://news.partnership.example.org", "secret_key": SECRET,
         "name": "Safeguarding News", **over}
    )  # fmt: skip


def _run(
    store: Any,
    reply: Any,
    *,
    connections: int = 2,
    breaker: int = 20,
    retry_wait: float = 10.0,
    sender_factory: Any = None,
    retry_base: float = 0.05,
    **kw: Any,
) -> tuple[DeliveryRun, list[tuple[str, str]]]:
    settings = _settings()
    log: list[tuple[str, str]] = []
    lock = threading.Lock()
    template = compose_issue(settings, subject="Test issue", html="<p>Hello</p>", text="Hello")
    recipients = Recipients.of(settings, issue_uid="f" * 32, key=SECRET.encode())
    run = DeliveryRun(
        store, template, recipients,
        sender_factory or (lambda: ScriptedSender(reply, log, lock)),
        options=RunOptions(
            connections=connections, lease_seconds=30,
            retry=RetryPolicy(timedelta(hours=1), base_seconds=retry_base),
            retry_wait_seconds=retry_wait, max_consecutive_failures=breaker,
        ),
        pacer=Pacer(0, 0), **kw,
    )  # fmt: skip
    return run, log


def test_the_loop_without_a_database_or_smtp_sends_retries_and_fails_the_right_rows() -> None:
    emails = [f"r{i}@example.net" for i in range(8)]
    store = MemoryStore(emails)

    def reply(rcpt: str, attempt: int) -> SendResult:
        if rcpt == "r2@example.net":
            return UNKNOWN
        if rcpt in ("r3@example.net", "r5@example.net") and attempt < 3:
            return LATER
        return OK

    snapshots: list[tuple[int, int, int, int]] = []
    waits: list[int] = []

    def progress(p: SendProgress) -> None:
        snapshots.append((p.sent, p.failed, p.deferred, p.processed))

    run, log = _run(
        store, reply, retry_base=0.3, on_progress=progress, on_wait=lambda when, n: waits.append(n)
    )
    outcome = run.run()
    assert outcome.finished and not outcome.interrupted
    assert outcome.counts["sent"] == 7 and outcome.counts["failed"] == 1
    assert store.issue.status == "sent_with_failures"
    assert store.by_email("r2@example.net").history == ["failed"]
    assert store.by_email("r3@example.net").history == ["deferred", "deferred", "sent"]
    attempts = Counter(r for r, _ in log)
    assert attempts == {**{e: 1 for e in emails}, "r3@example.net": 3, "r5@example.net": 3}
    # counts are of addresses, not attempts: 11 attempts, 8 addresses
    assert snapshots[-1] == (7, 1, 0, 8)
    assert max(d for _, _, d, _ in snapshots) <= 2
    assert waits and waits[0] == 2 and all(n <= 2 for n in waits)  # "waiting to retry 2 addresses"
    assert outcome.failed_addresses == ["r2@example.net"] and outcome.failed_count == 1
    assert store.checks >= len(log)  # ownership asserted before every attempt


def test_the_loop_stops_on_a_relay_refusing_everyone_and_keeps_them_queued() -> None:
    store = MemoryStore([f"r{i}@example.net" for i in range(10)])
    run, log = _run(store, lambda rcpt, attempt: UNKNOWN, connections=1, breaker=3)
    with pytest.raises(SenderRejected) as info:
        run.run()
    assert "3 addresses in a row were refused, the last with 550 5.1.1 User unknown" in str(
        info.value.message
    )
    assert store.counts()["queued"] == 10  # nobody failed
    assert 3 <= len(log) <= 4  # the one connection had at most one more in hand


def test_a_fatal_reply_stops_the_loop_with_everyone_queued() -> None:
    store = MemoryStore([f"r{i}@example.net" for i in range(6)])
    fatal = SendResult("permanent", 553, "553 5.7.1 Sender address rejected (at MAIL)", fatal=True)
    run, log = _run(store, lambda rcpt, attempt: fatal, connections=2)
    with pytest.raises(SenderRejected) as info:
        run.run()
    assert "553 5.7.1 Sender address rejected" in info.value.message
    assert store.counts()["queued"] == 6
    assert all(r.history == [] for r in store.rows.values())


def test_a_cancelled_row_is_not_sent_even_when_already_handed_to_a_connection() -> None:
    """The loop hands out rows ahead of the connections; one taken away (a cancel) between
    the hand-out and MAIL FROM is not sent (the check right before MAIL FROM says no)."""
    emails = [f"r{i}@example.net" for i in range(6)]
    store = MemoryStore(emails)
    original = store.check
    handed_out: list[int] = []

    def cancelled_before_the_first_check(delivery_ids: Sequence[int]) -> dict[int, str]:
        if store.checks == 0:  # the issue is cancelled once rows were handed out
            with store.lock:
                handed_out.extend(r.id for r in store.rows.values() if r.status == "sending")
                for row in store.rows.values():
                    if row.status in ("queued", "sending", "deferred") and row.id != 1:
                        row.status, row.leased = "skipped", False
        return original(delivery_ids)

    store.check = cancelled_before_the_first_check  # type: ignore[method-assign]
    run, log = _run(store, lambda rcpt, attempt: OK, connections=2)
    run.run()
    assert len(handed_out) > 1  # rows were with the connections when the cancel came
    assert [r for r, _ in log] == [emails[0]]
    assert store.counts()["skipped"] == 5


def test_an_unsubscribe_after_the_hand_out_is_honoured_at_mail_from() -> None:
    """A subscriber who unsubscribes while their message waits for a connection is skipped,
    never sent: their status is read in the same check right before MAIL FROM."""
    emails = [f"r{i}@example.net" for i in range(4)]
    store = MemoryStore(emails)
    original = store.check

    def unsubscribed_meanwhile(delivery_ids: Sequence[int]) -> dict[int, str]:
        store.subscriber_status[3] = "unsubscribed"
        return original(delivery_ids)

    store.check = unsubscribed_meanwhile  # type: ignore[method-assign]
    run, log = _run(store, lambda rcpt, attempt: OK, connections=2)
    outcome = run.run()
    assert sorted(r for r, _ in log) == [emails[0], emails[1], emails[3]]
    assert store.rows[3].status == "skipped" and store.rows[3].reply == "subscriber unsubscribed"
    assert outcome.counts["sent"] == 3 and outcome.counts["skipped"] == 1


# An exception inside a connection thread never hangs the run (real SqlStore) ---------------


class Exploding:
    """A Sender whose send raises (a bug, or an encoding error in the envelope)."""

    async def send(
        self, envelope_from: str, recipient: str, message: bytes, then: object = None
    ) -> SendResult:
        raise RuntimeError("boom in send")

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("where", ["send", "opening the connection"])
def test_an_exception_in_a_connection_thread_fails_that_job_and_never_hangs(
    cli, env, where: str
) -> None:
    seed(cli, subscribers=4)
    url = env["DIGEST_DATABASE_URL"]
    number = freeze_issue(url, env)
    settings = load_settings(environ=dict(env)).settings
    ((issue_id, uid, subject, html, text),) = rows(
        url, "SELECT id, uid, subject, html, text FROM issue WHERE number = :n", n=number
    )

    def factory() -> Any:
        if where == "send":
            return Exploding()
        raise RuntimeError("boom while opening the connection")

    engine = make_engine(url)
    store = SqlStore(engine, issue_id, worker="test-worker", lease_seconds=60)
    template = compose_issue(settings, subject=subject, html=html, text=text)
    recipients = Recipients.of(settings, issue_uid=uid, key=settings.secret_key_bytes())
    run = DeliveryRun(
        store, template, recipients, factory,
        options=RunOptions(connections=2, lease_seconds=60), pacer=Pacer(0, 0),
    )  # fmt: skip
    raised: list[BaseException] = []

    def go() -> None:
        try:
            run.run()
        except BaseException as exc:  # noqa: BLE001 (what the run ended with is the result)
            raised.append(exc)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    thread.join(20)
    try:
        assert not thread.is_alive(), "the run hung after an exception in a connection thread"
        (exc,) = raised
        assert isinstance(exc, DigestError)
        assert "unexpected RuntimeError: boom" in exc.message
        found = dict(rows(url, "SELECT status, count(*) FROM delivery GROUP BY status"))
        assert "sending" not in found and "sent" not in found and "failed" not in found
        assert found.get("deferred", 0) >= 1  # the job it happened to: tried, temporary
        (reply,) = {
            r for (r,) in rows(url, "SELECT last_reply FROM delivery WHERE status = 'deferred'")
        }
        assert reply.startswith("internal error: RuntimeError: boom")
    finally:
        store.close()
        engine.dispose()
