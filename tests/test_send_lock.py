"""The send lock (send/lock.py): a second sender on the same database stops with 75."""

from __future__ import annotations

from .helpers.seed import seed
from .helpers.smtp import SmtpServer


def test_second_sender_on_the_same_database_stops(cli, env, smtp_server: SmtpServer) -> None:
    from digest.send.lock import send_lock

    seed(cli, subscribers=2)
    with send_lock(env["DIGEST_DATABASE_URL"]):
        r = cli("send", "--yes")
    assert r.exit_code == 75  # EX_TEMPFAIL: cron may try again later
    assert "another `digest send` (pid" in r.stderr and "this one is stopping" in r.stderr
    assert smtp_server.messages == []
    assert cli("send", "--yes").exit_code == 0
