"""Issue #10, bounded time and what staff see: `digest send` stops promptly (a trickling
server, a greeting that never comes), holds its lock for the database however it is reached,
lets a new issue go out past an older one's deferred tail, stops at once on a message that
cannot be composed, keeps a retry's Message-ID, and tells the truth while and after it runs.

Real servers on loopback (aiosmtpd, or the scripted server for a trickle and a silent
greeting), the real CLI: in a subprocess wherever a signal is sent or the old code could
hang, in-process otherwise."""

from __future__ import annotations

import fcntl
import re
import signal
import subprocess
import time
from collections import Counter
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from digest.send.lock import send_lock

from .helpers.scripted_smtp import Say, ScriptedSmtp
from .helpers.sending import (
    add_items,
    digest,
    execute,
    finish,
    rows,
    seed,
    statuses,
    wait_until,
)
from .helpers.slow_smtp import start_slow_smtp
from .helpers.smtp import SmtpServer

# A byte a second, ~200 bytes: the 354 that opens DATA, or a reply to the final "." of
# continuation lines (a cut inside a line is then never taken for a whole reply)
TRICKLE = {
    "data": "354 " + "Go ahead, slowly " * 12,
    "dot": "250-Still working on it\r\n" * 8 + "250 2.0.0 OK",
}


def _db_path(env: dict[str, str]) -> Path:
    return Path(env["DIGEST_DATABASE_URL"].removeprefix("sqlite:///"))


def _lock_is_free(env: dict[str, str]) -> bool:
    path = _db_path(env).resolve()
    with path.with_name(path.name + ".send-lock").open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(fh, fcntl.LOCK_UN)
        return True


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


# Bounded time, prompt stop ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["data", "dot"], ids=["trickled-354", "trickled-final-reply"])
def test_sigterm_stops_a_send_held_by_a_trickling_server_and_frees_the_lock(
    cli, env, stage: str
) -> None:
    """A byte a second keeps every read inside smtp_timeout (30 s): only the stop, cutting
    the transaction short, ends it; the send exits 130 and releases the send lock."""
    seed(cli, subscribers=3)
    with ScriptedSmtp(
        lambda conn, at, arg: Say(TRICKLE[stage], trickle=1.0) if at == stage else None
    ) as server:
        proc = digest({**env, "DIGEST_SMTP_URL": server.url}, "send", "--yes")
        try:
            started = server.data_read if stage == "dot" else None
            assert wait_until(
                lambda: (
                    started.is_set() if started else "DATA" in map(str.upper, server.commands())
                ),
                30,
            )
            time.sleep(1.5)  # well into the trickle
            assert proc.poll() is None
            proc.send_signal(signal.SIGTERM)
            code, out, err = finish(proc, 20)
        finally:
            _kill(proc)
    assert code == 130, (code, out, err)
    assert "Run `digest send` again to resume it." in err
    assert _lock_is_free(env)
    found = statuses(env["DIGEST_DATABASE_URL"])
    assert "sending" not in found and "failed" not in found and "sent" not in found
    # the one in flight is queued again or deferred (see the test below), the rest queued
    assert found.get("queued", 0) >= 2 and sum(found.values()) == 3
    time.sleep(0.3)  # a deferred in-flight row is due again after its 0.2 s back-off
    r = cli("send", "--yes")  # the lock is free and the next run resumes
    assert "another `digest send`" not in r.output
    assert r.exit_code == 0, r.output


@pytest.mark.slow
def test_sigterm_in_the_middle_of_a_reply_before_the_final_dot_gives_the_row_back(cli, env) -> None:
    seed(cli, subscribers=2)
    with ScriptedSmtp(
        lambda conn, at, arg: Say("354 Go ahead", trickle=3.0) if at == "data" else None
    ) as server:
        proc = digest({**env, "DIGEST_SMTP_URL": server.url}, "send", "--yes")
        try:
            assert wait_until(lambda: "DATA" in map(str.upper, server.commands()), 30)
            time.sleep(1.0)  # the "3" has come, the "5" is 2 s away
            proc.send_signal(signal.SIGTERM)
            code, out, err = finish(proc, 20)
        finally:
            _kill(proc)
    assert code == 130, (code, out, err)
    found = rows(env["DIGEST_DATABASE_URL"], "SELECT status, attempts, last_reply FROM delivery")
    assert found == [("queued", 0, ""), ("queued", 0, "")]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stage", "setting"),
    [("data", "DIGEST_SMTP_TRANSACTION_SECONDS"), ("dot", "DIGEST_SMTP_FINAL_REPLY_SECONDS")],
    ids=["transaction-deadline", "final-reply-deadline"],
)
def test_an_overall_deadline_ends_a_trickle_without_a_signal(
    cli, env, stage: str, setting: str
) -> None:
    seed(cli, subscribers=3)
    with ScriptedSmtp(
        lambda conn, at, arg: (
            Say(TRICKLE[stage], trickle=1.0) if at == stage and conn.number == 1 else None
        )
    ) as server:
        proc = digest(
            {**env, "DIGEST_SMTP_URL": server.url, "DIGEST_SMTP_TIMEOUT": "2", setting: "3"},
            "send", "--yes",
        )  # fmt: skip
        try:
            code, out, err = finish(proc, 20)
        finally:
            _kill(proc)
    assert code == 75, (code, out, err)  # one delivery deferred: run again later
    url = env["DIGEST_DATABASE_URL"]
    assert statuses(url) == {"sent": 2, "deferred": 1}
    ((reply,),) = rows(url, "SELECT last_reply FROM delivery WHERE status = 'deferred'")
    assert "no reply in time" in reply
    assert _lock_is_free(env)


@pytest.mark.slow
def test_sigterm_while_connecting_to_a_silent_server_stops_at_once_with_nothing_frozen(
    cli, env
) -> None:
    """The server accepts TCP and never greets; smtp_timeout is 30 s. SIGTERM must not wait
    for it: exit 130, no issue made, the lock free."""
    seed(cli, subscribers=2)
    with ScriptedSmtp(
        lambda conn, at, arg: Say(silent=True) if at == "greeting" else None
    ) as server:
        proc = digest({**env, "DIGEST_SMTP_URL": server.url, "DIGEST_SMTP_TIMEOUT": "30"},
                      "send", "--yes")  # fmt: skip
        try:
            assert server.accepted_tcp.wait(30)
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            code, out, err = finish(proc, 15)  # half smtp_timeout: not waiting for it
        finally:
            _kill(proc)
    assert code == 130, (code, out, err)
    assert "stopped before anything was sent" in err
    assert "Traceback" not in err
    assert rows(env["DIGEST_DATABASE_URL"], "SELECT count(*) FROM issue") == [(0,)]
    assert _lock_is_free(env)


# One sender per SQLite database, however it is named -----------------------------------------


def test_the_send_lock_holds_through_a_symlinked_database_path(
    cli, env, smtp_server: SmtpServer, workdir: Path, monkeypatch
) -> None:
    seed(cli, subscribers=3)
    real = _db_path(env)
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "news.db").symlink_to(real)
    linked = f"sqlite:///{elsewhere / 'news.db'}"
    with send_lock(env["DIGEST_DATABASE_URL"]):  # another sender holds the real path
        monkeypatch.setenv("DIGEST_DATABASE_URL", linked)
        r = cli("send", "--yes")
    assert r.exit_code == 75, r.output
    assert "another `digest send`" in r.stderr
    assert smtp_server.messages == []
    assert rows(env["DIGEST_DATABASE_URL"], "SELECT count(*) FROM issue") == [(0,)]
    r = cli("send", "--yes")  # the lock released: through the link it sends, once each
    assert r.exit_code == 0, r.output
    assert Counter(r for m in smtp_server.messages for r in m.rcpt_tos) == {
        f"reader{i}@example.net": 1 for i in range(3)
    }


@pytest.mark.slow
def test_a_second_sender_through_a_symlink_is_refused_while_the_first_sends(
    cli, env, workdir: Path
) -> None:
    """Two real processes: the first sends through the real path to a slow server; the second,
    through a symlink, is refused; nobody gets two copies."""
    seed(cli, subscribers=8)
    server, controller, _ = start_slow_smtp(data=0.3)
    try:
        first = digest({**env, "DIGEST_SMTP_URL": server.url}, "send", "--yes")
        link = workdir / "link.db"
        link.symlink_to(_db_path(env))
        try:
            assert wait_until(lambda: len(server.messages) >= 1, 30)
            second = digest(
                {**env, "DIGEST_SMTP_URL": server.url, "DIGEST_DATABASE_URL": f"sqlite:///{link}"},
                "send", "--yes",
            )  # fmt: skip
            code2, out2, err2 = finish(second, 30)
            code1, out1, err1 = finish(first, 60)
        finally:
            _kill(first)
    finally:
        controller.stop()
    assert code2 == 75 and "another `digest send`" in err2, (code2, out2, err2)
    assert code1 == 0, err1
    assert Counter(r for m in server.messages for r in m.rcpt_tos) == {
        f"reader{i}@example.net": 1 for i in range(8)
    }


# A deferred tail does not block the next issue ---------------------------------------------


def _always_451_for(address: str):
    return lambda rcpt, data: "451 4.7.1 Greylisted, try again later" if rcpt == address else None


def test_a_deferred_tail_does_not_hold_up_the_next_issue(cli, env, smtp_server: SmtpServer) -> None:
    """One subscriber's server keeps answering 4xx. New items arrive: preview, check and send
    agree the next issue is the new one, and it is sent; the old one's retries go on."""
    seed(cli, subscribers=5)
    stuck = "reader2@example.net"
    smtp_server.reply = _always_451_for(stuck)
    tried: Counter[str] = Counter()
    smtp_server.on_data = lambda rec: tried.update(rec.rcpt_tos)
    r = cli("send", "--yes")
    assert r.exit_code == 75, r.output
    url = env["DIGEST_DATABASE_URL"]
    assert statuses(url) == {"sent": 4, "deferred": 1}
    add_items(cli, 2, tag="new")
    time.sleep(0.3)  # the deferred retry is due (0.2 s back-off here)
    r = cli("preview")
    assert r.exit_code == 0, r.output
    assert "Issue 2:" in r.stdout
    r = cli("check")
    assert "issue 2, the next send" in r.output, r.output
    r = cli("send", "--yes")
    assert "Issue 2:" in r.stdout and "to 5 subscribers" in r.stdout, r.output
    assert "Retrying the deferred deliveries of issue 1" in r.stdout, r.output
    assert r.exit_code == 75, r.output  # the stuck address is deferred again, in both issues
    issues = dict(rows(url, "SELECT number, status FROM issue"))
    assert issues == {1: "sending", 2: "sending"}
    by_issue = dict(
        rows(url, "SELECT i.number, count(*) FROM delivery d JOIN issue i ON i.id = d.issue_id "
                  "WHERE d.status = 'sent' GROUP BY i.number")
    )  # fmt: skip
    assert by_issue == {1: 4, 2: 4}
    new = [
        m
        for m in smtp_server.messages
        if "Item new0" in m.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    ]
    assert sorted(r for m in new for r in m.rcpt_tos) == sorted(
        f"reader{i}@example.net" for i in range(5) if i != 2
    )
    assert tried[stuck] >= 3  # issue 1 twice (its retry went on) and issue 2 once
    # once the stuck server accepts, the next run retries both issues and completes them
    smtp_server.reply = None
    time.sleep(0.5)
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    assert dict(rows(url, "SELECT number, status FROM issue")) == {1: "sent", 2: "sent"}


def test_a_stale_deferred_tail_is_dropped_by_scheduled_and_the_new_issue_sent(
    cli, env, smtp_server: SmtpServer
) -> None:
    seed(cli, subscribers=4)
    stuck = "reader1@example.net"
    smtp_server.reply = _always_451_for(stuck)
    assert cli("send", "--yes").exit_code == 75
    url = env["DIGEST_DATABASE_URL"]
    execute(url, "UPDATE issue SET created_at = '2000-01-01 00:00:00' WHERE number = 1")
    smtp_server.reply = None
    add_items(cli, 1, tag="new")
    before = len(smtp_server.messages)
    r = cli("send", "--scheduled")
    assert r.exit_code == 0, r.output
    assert "Issue 1 was still unfinished" in r.stdout and "not sent late" in r.stdout, r.output
    assert dict(rows(url, "SELECT number, status FROM issue")) == {1: "cancelled", 2: "sent"}
    got = [r for m in smtp_server.messages[before:] for r in m.rcpt_tos]
    assert sorted(got) == [f"reader{i}@example.net" for i in range(4)]  # issue 2, once each
    assert rows(
        url, "SELECT d.status FROM delivery d JOIN subscriber s ON s.id = d.subscriber_id "
             "JOIN issue i ON i.id = d.issue_id WHERE i.number = 1 AND s.email = :e", e=stuck,
    ) == [("skipped",)]  # fmt: skip


# A message that cannot be composed stops the send before the first message -----------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("setting", "value"),
    [("DIGEST_FROM", "Nachrichten <news@bücher.example>"),
     ("DIGEST_BASE_URL", "https://nachrichten.bücher.example")],
    ids=["idn-from", "idn-base-url"],
)  # fmt: skip
def test_an_idn_setting_never_leaves_the_send_retrying_forever(
    cli, env, smtp_server: SmtpServer, setting: str, value: str
) -> None:
    """An international domain name the config accepted either goes out in its ASCII form
    (punycode), or stops the send before the first message with a clear error that is not
    exit 75 ("try again later", forever); never a hang, never a half-sent issue."""
    seed(cli, subscribers=3)
    over = {**env, setting: value}
    proc = digest(over, "send", "--yes")
    code, out, err = finish(proc, 30)
    url = env["DIGEST_DATABASE_URL"]
    assert code is not None, f"the send hung: {out} {err}"
    assert "Traceback" not in err
    if code == 0:  # converted to ASCII: everyone got it, nothing on the wire is not ASCII
        assert sorted(r for m in smtp_server.messages for r in m.rcpt_tos) == [
            f"reader{i}@example.net" for i in range(3)
        ]
        assert all(m.mail_from.isascii() for m in smtp_server.messages)
        return
    assert code not in (65, 75), (code, out, err)
    assert "Error: the message cannot be composed" in err, err
    assert "Hint:" in err
    assert smtp_server.messages == []
    assert "sent" not in statuses(url) and "failed" not in statuses(url)
    assert "deferred" not in statuses(url) and "sending" not in statuses(url)
    again = digest(over, "send", "--yes")  # the same, not a retry loop
    code2, _, err2 = finish(again, 30)
    assert code2 == code and "cannot be composed" in err2


def test_idn_from_and_base_url_are_converted_to_punycode_and_sent(
    cli, env, smtp_server: SmtpServer, monkeypatch
) -> None:
    from digest.config import Settings

    settings = Settings.model_validate(
        {"from": "Nachrichten <news@bücher.example>", "base_url": "https://bücher.example/news"}
    )
    assert settings.from_address.endswith("<news@xn--bcher-kva.example>")
    assert settings.base_url == "https://xn--bcher-kva.example/news"
    seed(cli, subscribers=2)
    monkeypatch.setenv("DIGEST_FROM", "Nachrichten <news@bücher.example>")
    monkeypatch.setenv("DIGEST_BASE_URL", "https://bücher.example")
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    assert {m.mail_from for m in smtp_server.messages} == {"news@xn--bcher-kva.example"}


# A retry keeps its Message-ID --------------------------------------------------------------


def test_a_retry_keeps_its_message_id_after_from_changed(
    cli, env, smtp_server: SmtpServer, monkeypatch
) -> None:
    seed(cli, subscribers=3)
    first_try: dict[str, str] = {}

    def reply(rcpt: str, data: bytes) -> str | None:
        if rcpt == "reader1@example.net" and not first_try:
            first_try[rcpt] = str(message_from_bytes(data, policy=policy.default)["Message-ID"])
            return "451 4.3.0 Try again later"
        return None

    smtp_server.reply = reply
    assert cli("send", "--yes").exit_code == 75
    assert "@partnership.example.org>" in first_try["reader1@example.net"]
    monkeypatch.setenv("DIGEST_FROM", "Safeguarding News <news@another-domain.example.net>")
    time.sleep(0.3)
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    (retried,) = [m for m in smtp_server.messages if m.rcpt_tos == ["reader1@example.net"]]
    assert retried.message["Message-ID"] == first_try["reader1@example.net"]
    assert retried.mail_from == "news@another-domain.example.net"  # the new From is used


# Progress tells the truth -------------------------------------------------------------------


def test_a_run_waiting_for_retries_says_so_and_counts_addresses(
    cli, env, smtp_server: SmtpServer, monkeypatch
) -> None:
    monkeypatch.setenv("DIGEST_RETRY_WAIT_SECONDS", "30")
    monkeypatch.setenv("DIGEST_RETRY_BASE_SECONDS", "0.5")
    seed(cli, subscribers=5)
    tries: Counter[str] = Counter()
    later = {"reader1@example.net", "reader3@example.net"}

    def reply(rcpt: str, data: bytes) -> str | None:
        tries[rcpt] += 1
        # a 4xx that is not "slow down": no pause of the whole run, so the run waits
        return "441 4.4.1 No answer from host" if rcpt in later and tries[rcpt] == 1 else None

    smtp_server.reply = reply
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    assert re.search(
        r"Waiting until \d\d:\d\d to retry 2 addresses; stop with Ctrl-C, the next run "
        r"retries them\.",
        r.output,
    ), r.output
    assert "Issue 1: 5 sent, 0 failed, 0 deferred, 0 skipped, 0 not yet tried." in r.stdout
    assert sum(tries.values()) == 7  # 7 attempts, 5 addresses


def test_the_summary_names_the_failed_addresses_and_exits_65(
    cli, env, smtp_server: SmtpServer
) -> None:
    seed(cli, subscribers=9)
    bad = [f"reader{i}@example.net" for i in range(1, 8)]  # 7 of 9, reader0 and reader8 fine
    smtp_server.reply = lambda rcpt, data: "550 5.1.1 User unknown" if rcpt in bad else None
    r = cli("send", "--yes")
    assert r.exit_code == 65, r.output
    assert "Issue 1: 2 sent, 7 failed, 0 deferred" in r.stdout
    (line,) = [ln for ln in r.stderr.splitlines() if "refused it for good" in ln]
    assert line.startswith("7 addresses refused it for good: ")
    named = re.findall(r"reader\d@example\.net", line)
    assert 1 <= len(named) < 7 and set(named) <= set(bad)
    assert f"and {7 - len(named)} more" in line
    assert "`digest issues show 1`" in line
    assert "failed permanently" in r.stderr
    shown = cli("issues", "show", "1")
    assert all(a in shown.stdout for a in bad) and "550 5.1.1 User unknown" in shown.stdout


# A lease cannot be shorter than the waits of one transaction --------------------------------


def test_a_lease_shorter_than_two_reply_waits_is_refused_before_anything(
    cli, env, smtp_server: SmtpServer, monkeypatch
) -> None:
    seed(cli, subscribers=2)
    monkeypatch.setenv("DIGEST_LEASE_SECONDS", "5")  # the issue's case: 5 s, smtp_timeout 30 s
    r = cli("send", "--yes")
    assert r.exit_code == 3, r.output  # a settings error
    assert "lease_seconds (5) must be at least twice smtp_timeout (30)" in r.stderr
    assert smtp_server.messages == []
    assert rows(env["DIGEST_DATABASE_URL"], "SELECT count(*) FROM issue") == [(0,)]
