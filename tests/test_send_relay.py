"""`digest check --smtp` (send/relay.py) against real SMTP servers on loopback: a plain relay,
STARTTLS with a certificate the system does not trust (refused, then accepted through
smtp_ca_file), a wrong password, a relay that refuses the sender, and no relay at all. The
check sends nothing."""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from digest.demo import free_port

from .helpers.smtp import RecordingHandler, SmtpServer, start_smtp


def _line(output: str, step: str) -> str:
    found = re.search(rf"^  (\w+)\s+{re.escape(step)}\s+(.*)$", output, re.M)
    assert found, output
    return f"{found.group(1)} {found.group(2)}"


def test_plain_relay_every_step_and_nothing_sent(cli, env, smtp_server: SmtpServer) -> None:
    r = cli("check", "--smtp")
    assert r.exit_code == 0, r.output
    assert f"Relay: smtp://127.0.0.1:{smtp_server.port}" in r.stdout
    assert _line(r.stdout, "connect") == f"ok connected to 127.0.0.1:{smtp_server.port}"
    assert _line(r.stdout, "tls").startswith("warning none: smtp:// sends in the clear")
    assert _line(r.stdout, "ehlo").startswith("ok SIZE 33 MB, ")
    assert "no AUTH" in _line(r.stdout, "ehlo")
    assert _line(r.stdout, "login").startswith("ok none: smtp_url names no user")
    assert _line(r.stdout, "mail-from") == (
        "ok MAIL FROM:<news@partnership.example.org> accepted (250 OK), then RSET"
    )
    assert "The relay is ready" in r.stdout
    assert smtp_server.messages == []


def test_starttls_with_an_untrusted_certificate_then_smtp_ca_file(
    cli, env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    server, controller = start_smtp(tls_context=ctx, require_starttls=True)
    try:
        monkeypatch.setenv("DIGEST_SMTP_URL", f"smtp+starttls://127.0.0.1:{server.port}")
        r = cli("check", "--smtp")
        assert r.exit_code == 1, r.output
        assert _line(r.stdout, "connect").startswith("ok connected")
        assert _line(r.stdout, "tls").startswith(
            "error the TLS certificate of 127.0.0.1 could not be verified"
        )
        assert "Error: relay check, tls: the TLS certificate of 127.0.0.1" in r.stderr
        assert "Hint: For a relay with a private certificate authority set smtp_ca_file" in r.stderr
        assert "mail-from" not in r.stdout and "Traceback" not in r.output
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        monkeypatch.setenv("DIGEST_SMTP_CA_FILE", str(tmp_path / "ca.pem"))
        r = cli("check", "--smtp")
        assert r.exit_code == 0, r.output
        assert re.match(r"ok TLSv1\.[23], the certificate of 127\.0\.0\.1 verified",
                        _line(r.stdout, "tls"))  # fmt: skip
        assert "STARTTLS" in _line(r.stdout, "ehlo")
        assert server.messages == []
    finally:
        controller.stop()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (no CA at all), and that key."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = folder / "relay.pem", folder / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


def test_smtps_with_a_self_signed_certificate(
    cli, env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Implicit TLS (smtps://) to a relay whose certificate signed itself: refused, as a send
    refuses it; trusted once smtp_ca_file names that very certificate."""
    cert, key = _self_signed(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server, controller = start_smtp(ssl_context=ctx)
    try:
        monkeypatch.setenv("DIGEST_SMTP_URL", f"smtps://127.0.0.1:{server.port}")
        r = cli("check", "--smtp")
        assert r.exit_code == 1, r.output
        assert _line(r.stdout, "tls") == (
            "error the TLS certificate of 127.0.0.1 could not be verified: self-signed certificate"
        )
        assert "smtp_ca_file" in r.stderr
        cli("news", "add", "--title", "An item", "--url", "https://example.org/n/1")
        r = cli("send", "--to", "me@example.org")
        assert r.exit_code == 1 and "self-signed certificate" in r.stderr  # as a send does
        monkeypatch.setenv("DIGEST_SMTP_CA_FILE", str(cert))
        r = cli("check", "--smtp")
        assert r.exit_code == 0, r.output
        assert "the certificate of 127.0.0.1 verified" in _line(r.stdout, "tls")
        assert server.messages == []
    finally:
        controller.stop()


def test_a_wrong_password_is_reported_and_never_printed(
    cli, env, monkeypatch: pytest.MonkeyPatch
) -> None:
    def auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = data.login == b"digest" and data.password == b"s3cret-pw"
        return AuthResult(success=ok, handled=False)

    server, controller = start_smtp(authenticator=auth, auth_require_tls=False)
    try:
        monkeypatch.setenv("DIGEST_SMTP_URL", f"smtp://digest@127.0.0.1:{server.port}")
        monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "wrong-pw")
        r = cli("check", "--smtp")
        assert r.exit_code == 3, r.output  # as for a send: the settings are wrong
        assert "AUTH " in _line(r.stdout, "ehlo")
        assert _line(r.stdout, "login").startswith("error smtp://127.0.0.1:")
        assert "refused the login for user 'digest': 535" in r.stderr
        assert "Hint: Check the user in smtp_url and DIGEST_SMTP_PASSWORD" in r.stderr
        assert "wrong-pw" not in r.output
        monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "s3cret-pw")
        r = cli("check", "--smtp")
        assert r.exit_code == 0, r.output
        assert _line(r.stdout, "login") == "ok logged in as 'digest'"
        assert "s3cret-pw" not in r.output
    finally:
        controller.stop()


class _RefusingSender(RecordingHandler):
    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        return "553 5.7.1 Sender address rejected: not owned by user"


def test_a_relay_that_refuses_the_sender(cli, env, monkeypatch: pytest.MonkeyPatch) -> None:
    server = SmtpServer("127.0.0.1", free_port())
    controller = Controller(_RefusingSender(server), hostname=server.host, port=server.port)
    controller.start()
    try:
        monkeypatch.setenv("DIGEST_SMTP_URL", server.url)
        r = cli("check", "--smtp")
        assert r.exit_code == 1, r.output
        assert _line(r.stdout, "mail-from") == (
            "error MAIL FROM:<news@partnership.example.org> refused: 553 5.7.1 Sender address "
            "rejected: not owned by user"
        )
        assert "Hint: The relay does not let this login send as this address" in r.stderr
    finally:
        controller.stop()


def test_no_relay_listening(cli, env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SMTP_URL", f"smtp://127.0.0.1:{free_port()}")
    r = cli("check", "--smtp")
    assert r.exit_code == 1, r.output
    assert "error cannot connect to 127.0.0.1:" in _line(r.stdout, "connect")
    assert "Connection refused" in r.stderr and "Hint: Check smtp_url" in r.stderr
    assert "The relay check failed; nothing was sent." in r.stdout


def test_check_help_names_smtp(cli) -> None:
    r = cli("check", "--help")
    assert r.exit_code == 0 and "--smtp" in r.stdout and "digest check --smtp" in r.stdout
