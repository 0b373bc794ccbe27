"""A message's content, its final "." and the next message's MAIL, RCPT and DATA go out in one
write to a relay that offers PIPELINING (RFC 2920 §3.1: message content may start a group),
so a transaction after the first costs no round trip of its own. Against a scripted server
on loopback that records what had already arrived behind each final ".".
"""

from __future__ import annotations

import pytest

from .helpers.scripted_smtp import DEFAULT, Say, ScriptedSmtp
from .helpers.sending import seed, statuses

PIPELINING = ("PIPELINING",)


class Settings:
    """The newsletter's settings (environment variables) for one test, set as it goes."""

    def __init__(self, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.env, self.monkeypatch = env, monkeypatch

    def __getitem__(self, key: str) -> str:
        return self.env[key]

    def __setitem__(self, key: str, value: str) -> None:
        self.env[key] = value
        self.monkeypatch.setenv(key, value)


@pytest.fixture
def one_connection(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    settings = Settings(env, monkeypatch)
    settings["DIGEST_SMTP_CONNECTIONS"] = "1"
    settings["DIGEST_SEND_RATE"] = "0"
    return settings


def test_the_next_envelope_follows_the_content_in_the_same_write(cli, one_connection) -> None:
    seed(cli, subscribers=5)
    with ScriptedSmtp(extensions=PIPELINING) as server:
        one_connection["DIGEST_SMTP_URL"] = server.url
        r = cli("send", "--yes")
        messages = server.accepted()
    assert r.exit_code == 0, r.output
    assert sorted(server.accepted_rcpts()) == [f"reader{i}@example.net" for i in range(5)]
    assert len(messages) == 5 and len({m.conn for m in messages}) == 1
    # every message but the last had the next envelope right behind its "."
    for m, nxt in zip(messages, messages[1:], strict=False):
        assert m.followed.startswith(f"MAIL FROM:<{nxt.mail_from}>\r\n".encode()), m.followed
        assert f"RCPT TO:<{nxt.rcpts[0]}>\r\nDATA\r\n".encode() in m.followed
    assert messages[-1].followed == b""
    assert statuses(one_connection["DIGEST_DATABASE_URL"]) == {"sent": 5}


def test_no_pipelining_offered_no_envelope_ahead(cli, one_connection) -> None:
    seed(cli, subscribers=3)
    with ScriptedSmtp() as server:
        one_connection["DIGEST_SMTP_URL"] = server.url
        r = cli("send", "--yes")
        messages = server.accepted()
    assert r.exit_code == 0, r.output
    assert len(messages) == 3 and all(m.followed == b"" for m in messages)


def test_a_421_to_the_dot_with_an_envelope_ahead_loses_and_doubles_nothing(
    cli, one_connection
) -> None:
    """The relay closes after the second message (421 to its "."): the third message, whose
    envelope was already written, was never sent and goes on a new connection; the second is
    deferred and retried. In the end every reader has exactly one accepted copy."""
    seed(cli, subscribers=4)
    one_connection["DIGEST_RETRY_WAIT_SECONDS"] = "5"

    def script(conn, stage: str, arg: str) -> Say | None:
        if stage == "dot" and conn.number == 1 and arg == "reader1@example.net":
            return Say("421 4.3.2 Service shutting down", close=True)
        return None

    with ScriptedSmtp(script, extensions=PIPELINING) as server:
        one_connection["DIGEST_SMTP_URL"] = server.url
        r = cli("send", "--yes")
        accepted = server.accepted_rcpts()
        first = [m for m in server.messages if m.conn == 1]
    assert r.exit_code == 0, r.output
    assert first[-1].rcpts == ["reader1@example.net"] and b"MAIL FROM" in first[-1].followed
    assert sorted(accepted) == [f"reader{i}@example.net" for i in range(4)]
    assert statuses(one_connection["DIGEST_DATABASE_URL"]) == {"sent": 4}


def test_a_refused_recipient_ahead_is_recorded_and_the_rest_go(cli, one_connection) -> None:
    """The envelope that went out behind a message is refused at RCPT: recorded as failed,
    the connection reset, and the next message sent normally."""
    seed(cli, subscribers=4)

    def script(conn, stage: str, arg: str) -> str | None:
        if stage == "rcpt" and arg == "reader2@example.net":
            return "550 5.1.1 No such user"
        if stage == "data" and not arg:  # as Postfix answers a DATA with no recipient
            return "554 5.5.1 Error: no valid recipients"
        return None

    with ScriptedSmtp(script, extensions=PIPELINING) as server:
        one_connection["DIGEST_SMTP_URL"] = server.url
        r = cli("send", "--yes")
        accepted = server.accepted_rcpts()
        commands = server.commands()
    assert sorted(accepted) == ["reader0@example.net", "reader1@example.net", "reader3@example.net"]
    assert "RSET" in commands
    assert statuses(one_connection["DIGEST_DATABASE_URL"]) == {"sent": 3, "failed": 1}
    assert r.exit_code != 0 or "failed" in r.output.lower()


def test_a_rate_the_relay_is_slower_than_still_pipelines(cli, one_connection) -> None:
    """send_rate 50/s (a slot every 20 ms) and a relay that takes 60 ms to open each DATA: the
    next slot has come by the time the content goes, so its envelope goes behind it."""
    seed(cli, subscribers=4)
    one_connection["DIGEST_SEND_RATE"] = "50"

    def script(conn, stage: str, arg: str) -> Say | None:
        return Say(DEFAULT["data"], delay=0.06) if stage == "data" else None

    with ScriptedSmtp(script, extensions=PIPELINING) as server:
        one_connection["DIGEST_SMTP_URL"] = server.url
        r = cli("send", "--yes")
        messages = server.accepted()
    assert r.exit_code == 0, r.output
    assert len(messages) == 4
    assert all(m.followed.startswith(b"MAIL FROM:") for m in messages[:-1])


def test_a_rate_that_holds_messages_back_is_kept(cli, one_connection) -> None:
    """send_rate 5/s and a fast relay: no envelope goes out before its slot (200 ms apart),
    pipelined or not."""
    seed(cli, subscribers=4)
    one_connection["DIGEST_SEND_RATE"] = "5"
    with ScriptedSmtp(extensions=PIPELINING) as server:
        one_connection["DIGEST_SMTP_URL"] = server.url
        r = cli("send", "--yes")
        messages = server.accepted()
    assert r.exit_code == 0, r.output
    assert len(messages) == 4
    gaps = [b.mail_at - a.mail_at for a, b in zip(messages, messages[1:], strict=False)]
    assert min(gaps) >= 0.18, gaps


def test_a_job_found_inactive_ahead_gives_way_to_the_next(cli, one_connection) -> None:
    """reader1 unsubscribes while reader0's message is on its way: when reader0's content
    goes out, reader1's job is checked, found inactive and skipped, and reader2's envelope
    follows reader0's content instead (the round trip is not lost to the skip)."""
    import sqlite3

    seed(cli, subscribers=4)
    path = one_connection["DIGEST_DATABASE_URL"].removeprefix("sqlite:///")

    def script(conn, stage: str, arg: str) -> Say | None:
        if stage == "rcpt" and arg == "reader0@example.net":
            with sqlite3.connect(path) as db:
                db.execute("UPDATE subscriber SET status = 'unsubscribed' "
                           "WHERE email = 'reader1@example.net'")  # fmt: skip
        return None

    with ScriptedSmtp(script, extensions=PIPELINING) as server:
        one_connection["DIGEST_SMTP_URL"] = server.url
        r = cli("send", "--yes")
        messages = server.accepted()
    assert r.exit_code == 0, r.output
    assert [m.rcpts[0] for m in messages] == [f"reader{i}@example.net" for i in (0, 2, 3)]
    assert messages[0].followed.startswith(b"MAIL FROM:<"), messages[0].followed
    assert b"RCPT TO:<reader2@example.net>\r\nDATA\r\n" in messages[0].followed
    assert statuses(one_connection["DIGEST_DATABASE_URL"]) == {"sent": 3, "skipped": 1}
