"""The SMTP sender (send/mailer.py) against real servers on loopback: a refused connection, a 554
greeting, STARTTLS with certificate checks and a private CA, and a login whose password is
never printed."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from .helpers.db import rows
from .helpers.seed import seed
from .helpers.smtp import SmtpServer, start_smtp


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


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_send_over_starttls_with_a_login_on_either_event_loop(
    cli, env, monkeypatch, tmp_path: Path, loop: str
) -> None:
    """The send runs on uvloop where it is installed and on asyncio's own loop where it is
    not (digest.send.loop.new_event_loop): the one SMTP client works the same on both, TLS
    upgrade and login included."""
    import asyncio
    import ssl

    from aiosmtpd.smtp import AuthResult

    from digest.send import mailer, run

    if loop == "asyncio":
        monkeypatch.setattr(mailer, "new_event_loop", asyncio.new_event_loop)
        monkeypatch.setattr(run, "new_event_loop", asyncio.new_event_loop)
    else:
        pytest.importorskip("uvloop")
    used: list[str] = []
    real = run.DeliveryRun.run

    def spy(self: run.DeliveryRun) -> object:
        used.append(type(self.loop).__module__ if self.loop else "")
        return real(self)

    monkeypatch.setattr(run.DeliveryRun, "run", spy)
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))

    def auth(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"digest" and auth_data.password == b"s3cret-pw"
        return AuthResult(success=ok, handled=False)

    server, controller = start_smtp(tls_context=ctx, require_starttls=True, authenticator=auth)
    try:
        seed(cli, subscribers=3)
        monkeypatch.setenv("DIGEST_SMTP_URL", f"smtp+starttls://digest@127.0.0.1:{server.port}")
        monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "s3cret-pw")
        monkeypatch.setenv("DIGEST_SMTP_CA_FILE", str(tmp_path / "ca.pem"))
        monkeypatch.setenv("DIGEST_SMTP_CONNECTIONS", "2")
        r = cli("send", "--yes")
        assert r.exit_code == 0, r.output
        assert sorted(m.rcpt_tos[0] for m in server.messages) == [
            f"reader{i}@example.net" for i in range(3)
        ]
        assert rows(env, "SELECT status, count(*) FROM delivery GROUP BY status") == [("sent", 3)]
        assert used == ["uvloop" if loop == "uvloop" else "asyncio.unix_events"]
    finally:
        controller.stop()


def test_a_closed_senders_event_loop_is_freed(smtp_server: SmtpServer) -> None:
    """Each SmtpSender has an event loop of its own (`digest serve` makes one for every
    confirmation email): once closed, the loop and its deadline ticker are freed."""
    import gc
    import weakref

    from digest.send.loop import TICKERS
    from digest.send.mailer import SmtpSender
    from digest.smtp_url import parse_smtp_url

    sender = SmtpSender(parse_smtp_url(f"smtp://127.0.0.1:{smtp_server.port}"))
    msg = b"Subject: hello\r\n\r\nhello\r\n"
    assert sender.send("news@partnership.example.org", "ana@example.org", msg).outcome == "sent"
    loop = weakref.ref(sender.loop)
    assert loop() in TICKERS  # the send armed its deadlines on the loop's ticker
    sender.close()
    del sender
    gc.collect()
    assert loop() is None
    assert len(smtp_server.messages) == 1
