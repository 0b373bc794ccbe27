"""DKIM: sign with dkimpy (RSA and Ed25519), verify against the public key, tampering fails;
the key file must be owner-only; a real send signs every message."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dkim
import pytest

from digest.compose.dkim import ED25519, RSA, DkimSigner, load_signer, parse_key
from digest.config_load import load_settings
from digest.errors import ConfigError

from .helpers.keys import dns_for, ed25519_pem, rsa_pem, signed_message
from .helpers.smtp import SmtpServer

REQUIRED = {b"from", b"to", b"subject", b"date", b"message-id", b"list-id", b"list-unsubscribe",
            b"list-unsubscribe-post"}  # fmt: skip


@pytest.mark.parametrize(
    "make_key, algorithm",
    [(rsa_pem, RSA), (lambda: rsa_pem(pkcs8=True), RSA), (ed25519_pem, ED25519),
     (lambda: base64.b64encode(os.urandom(32)), ED25519)],
    ids=["rsa-pkcs1", "rsa-pkcs8", "ed25519-pkcs8", "ed25519-seed"],
)  # fmt: skip
def test_sign_then_verify_with_dkimpy(make_key: Callable[[], bytes], algorithm: bytes) -> None:
    alg, key = parse_key(make_key())
    assert alg == algorithm
    signer = DkimSigner("example.org", "digest2026", alg, key)
    data = signed_message(signer)
    assert data.startswith(b"DKIM-Signature: ")
    # dkimpy verifies it against the public key published as the DNS record says
    assert dkim.verify(data, dnsfunc=dns_for(signer))
    sig = dkim.util.parse_tag_value(
        re.search(rb"^DKIM-Signature: (.*?)\r\n(?![ \t])", data, re.S | re.M).group(1)
    )
    assert sig[b"a"] == algorithm and sig[b"d"] == b"example.org" and sig[b"s"] == b"digest2026"
    signed = {h.strip().lower() for h in sig[b"h"].split(b":")}
    assert signed >= REQUIRED
    # a second message with another recipient verifies too (its own body hash)
    assert signer.verify(signed_message(signer, 2))


@pytest.mark.parametrize(
    "header, forged",
    [(b"Subject: ", b"Subject: You won a prize\r\n"),
     (b"List-Unsubscribe: ", b"List-Unsubscribe: <https://evil.example/u>\r\n"),
     (b"To: ", b"To: someone-else@example.net\r\n")],
)  # fmt: skip
def test_tampering_with_a_signed_header_fails(header: bytes, forged: bytes) -> None:
    signer = DkimSigner("example.org", "s1", *parse_key(rsa_pem()))
    data = signed_message(signer)
    assert signer.verify(data)
    start = data.index(b"\r\n" + header) + 2
    end = data.index(b"\r\n", start)
    while data[end + 2 : end + 3] in (b" ", b"\t"):  # folded continuation lines
        end = data.index(b"\r\n", end + 2)
    tampered = data[:start] + forged + data[end + 2 :]
    assert tampered != data
    assert not dkim.verify(tampered, dnsfunc=dns_for(signer))


def test_tampering_with_the_body_fails() -> None:
    signer = DkimSigner("example.org", "s1", *parse_key(base64.b64encode(os.urandom(32))))
    data = signed_message(signer)
    assert not signer.verify(
        data.replace(b"Return interviews within 72", b"Return interviews within 96")
    )


def test_another_key_does_not_verify() -> None:
    a = DkimSigner("example.org", "s1", *parse_key(rsa_pem()))
    b = DkimSigner("example.org", "s1", *parse_key(rsa_pem()))
    assert not b.verify(signed_message(a))


def _settings(tmp_path: Path, key: bytes, mode: int = 0o600, **extra: str) -> Any:
    path = tmp_path / "dkim.key"
    path.write_bytes(key)
    path.chmod(mode)
    env = {"DIGEST_DKIM_DOMAIN": "example.org", "DIGEST_DKIM_SELECTOR": "s1",
           "DIGEST_DKIM_PRIVATE_KEY_FILE": str(path), **extra}  # fmt: skip
    return load_settings(environ=env).settings


def test_load_signer_from_settings(tmp_path: Path, workdir: Path) -> None:
    assert load_signer(load_settings(environ={}).settings) is None
    signer = load_signer(_settings(tmp_path, rsa_pem()))
    assert signer is not None and signer.algorithm == RSA and signer.domain == "example.org"
    assert signer.dns_record().startswith("v=DKIM1; k=rsa; p=MIIBIjAN")  # SubjectPublicKeyInfo


def test_key_file_readable_by_others_is_refused(tmp_path: Path, workdir: Path) -> None:
    with pytest.raises(ConfigError, match="can be read by other users") as err:
        load_signer(_settings(tmp_path, rsa_pem(), mode=0o644))
    assert err.value.hint == f"Run `chmod 600 {tmp_path / 'dkim.key'}`."


def test_bad_key_and_partial_settings(tmp_path: Path, workdir: Path) -> None:
    with pytest.raises(ConfigError, match="neither a PEM private key nor a base64 Ed25519 key"):
        load_signer(_settings(tmp_path, b"not a key"))
    with pytest.raises(
        ConfigError, match="DKIM needs dkim_domain, dkim_selector and dkim_private_key_file"
    ):
        load_settings(environ={"DIGEST_DKIM_DOMAIN": "example.org"})


def test_real_send_is_signed(
    env: dict[str, str], cli: Callable[..., Any], workdir: Path, smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    key = workdir / "dkim.key"
    key.write_bytes(rsa_pem())
    key.chmod(0o600)
    monkeypatch.setenv("DIGEST_DKIM_DOMAIN", "partnership.example.org")
    monkeypatch.setenv("DIGEST_DKIM_SELECTOR", "news2026")
    monkeypatch.setenv("DIGEST_DKIM_PRIVATE_KEY_FILE", str(key))
    assert cli("subscribers", "add", "ana@example.net").exit_code == 0
    assert cli("subscribers", "add", "ben@example.net").exit_code == 0
    r = cli("news", "add", "--title", "Signed news", "--url", "https://example.org/signed")
    assert r.exit_code == 0, r.output
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    signer = load_signer(load_settings().settings)
    assert signer is not None
    assert len(smtp_server.messages) == 2
    for m in smtp_server.messages:
        assert m.data.startswith(b"DKIM-Signature: ")
        assert dkim.verify(m.data, dnsfunc=dns_for(signer))
