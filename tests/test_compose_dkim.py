"""DKIM: digest's own canonicalisation and OpenSSL's signature (RSA and Ed25519) make byte for
byte dkimpy's signature, and dkimpy verifies it; tampering fails; the key file must be
owner-only; dkimpy verifies every message of a real send with awkward headers and bodies."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dkim
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.compose.dkim import (
    ED25519,
    RSA,
    SIGNED_HEADERS,
    DkimSigner,
    fold,
    load_signer,
    parse_key,
)  # fmt: skip
from digest.config_load import load_settings
from digest.errors import ConfigError

from .helpers.keys import dkim_settings, dns_for, ed25519_pem, rsa_pem, signed_message
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


# Header fields and bodies that canonicalisation must get right: folded lines, tabs and runs of
# spaces, encoded-words, a header name in odd case, a field signed twice or not present.
AWKWARD_HEAD = (
    b"From: =?utf-8?b?R3dhc2FuYWV0aGF1IMWBw7Nkxbo=?= <news@example.org>\r\n"
    b"To: =?utf-8?b?U2lvYmjDoW4gTydCcmllbiwgSnIu?=\r\n <reader@example.net>\r\n"
    b"SUBJECT:   Safeguarding News:\t24 November \xe2\x80\x93 1 December 2026, a subject long"
    b"\r\n enough to be folded  twice over, with\t\ttabs\r\n\tand   runs of  spaces   \r\n"
    b"Date: Fri, 27 Nov 2026 08:00:00 +0000\r\n"
    b"Message-ID: <digest.7.1@example.org>\r\n"
    b"List-Id: =?utf-8?q?Z=C3=BCrich_news?= <zurich.example.org>\r\n"
    b"List-Unsubscribe: <https://news.example.org/unsubscribe/x_1_y>,\r\n"
    b" <mailto:news@example.org?subject=unsubscribe>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"X-Not-Signed: \t anything \r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: text/plain; charset="utf-8"\r\n'
)
AWKWARD_BODIES = {
    "trailing-blank-lines": b"Hello,\r\n\r\nthe news.\r\n\r\n\r\n\r\n",
    "whitespace-runs": b"a  b\t\tc   \r\n \t \r\nend of  line \t\r\n",
    "dot-lines": b"..stuffed\r\n.\r\n. a dot\r\n=2E encoded\r\n",
    "no-final-crlf": b"the last line has no line end",
    "empty": b"",
    "only-blank-lines": b"\r\n\r\n\r\n",
}
CANONICALISATIONS = [(b"relaxed", b"simple"), (b"relaxed", b"relaxed"), (b"simple", b"simple")]
KEYS = {"rsa-2048": rsa_pem, "ed25519": ed25519_pem}


@pytest.mark.parametrize("canon", CANONICALISATIONS, ids=lambda c: b"/".join(c).decode())
@pytest.mark.parametrize("body", AWKWARD_BODIES.values(), ids=AWKWARD_BODIES.keys())
@pytest.mark.parametrize("make_key", KEYS.values(), ids=KEYS.keys())
def test_signature_is_dkimpys_byte_for_byte(
    make_key: Callable[[], bytes], body: bytes, canon: tuple[bytes, bytes]
) -> None:
    """dkimpy signs first; ours, with its t=, must be the same bytes (RSA PKCS#1 v1.5 and
    Ed25519 are deterministic), and dkimpy verifies it."""
    signer = DkimSigner("example.org", "s1", *parse_key(make_key()), canonicalize=canon)
    message = AWKWARD_HEAD + b"\r\n" + body
    theirs = dkim.DKIM(message).sign(
        b"s1", b"example.org", signer.private_key, signature_algorithm=signer.algorithm,
        canonicalize=canon, include_headers=list(SIGNED_HEADERS),
    )  # fmt: skip
    when = int(re.search(rb"t=(\d+)", theirs).group(1))  # type: ignore[union-attr]
    ours = signer.sign(message, timestamp=when)
    assert ours == theirs + message
    assert dkim.verify(ours, dnsfunc=dns_for(signer))
    assert not dkim.verify(ours.replace(b"Z=C3=BCrich", b"Zurich"), dnsfunc=dns_for(signer))


@pytest.mark.parametrize("make_key", KEYS.values(), ids=KEYS.keys())
def test_every_message_of_an_awkward_send_verifies(
    make_key: Callable[[], bytes], env: dict[str, str], cli: Callable[..., Any], workdir: Path,
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A real `digest send` over 4 connections to aiosmtpd: non-ASCII and long names, a subject
    long enough to fold, a summary with runs of spaces, tabs, dot lines and trailing blank
    lines; dkimpy verifies every message received, each with its own body hash (the
    unsubscribe links differ)."""
    for name, value in dkim_settings(
        workdir, make_key(), SMTP_CONNECTIONS="4",
        FROM="Gwasanaethau Cymdeithasol Łódź <news@partnership.example.org>",
        NAME="Zürich & Łódź Safeguarding Partnership — weekly news for practitioners",
        SUBJECT="{{ name }}: {{ date_range }} — everything that changed, in one long line",
    ).items():  # fmt: skip
        monkeypatch.setenv(name, value)
    people = {"ana@example.net": "Siobhán O'Brien, Jr.", "ben@example.net": "",
              "cy@example.net": "Zoë  Łukasiewicz-Smith\tthe Third of that Name, Esq.",
              "dee@example.net": "Plain Name"}  # fmt: skip
    for email, name in people.items():
        r = cli("subscribers", "add", email, *(["--name", name] if name else []))
        assert r.exit_code == 0, r.output
    summary = (
        "<p>Runs   of   spaces,\ttabs\t\tand a line end   \n. a line starting with a dot\n"
        "..two dots\n.\n</p>\n\n\n<pre>  indented\n\n\n</pre>\n\n"
    )
    r = cli("news", "add", "--title", "Łódź: a headline long enough to need folding " * 3,
            "--url", "https://example.org/a", "--summary", summary)  # fmt: skip
    assert r.exit_code == 0, r.output
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    signer = load_signer(load_settings().settings)
    assert signer is not None
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == sorted(people)
    hashes = set()
    for m in smtp_server.messages:
        assert m.data.startswith(b"DKIM-Signature: v=1; a=" + signer.algorithm)
        assert dkim.verify(m.data, dnsfunc=dns_for(signer)), m.rcpt_tos
        hashes.add(re.search(rb"bh=([^;]+);", m.data).group(1))  # type: ignore[union-attr]
    assert len(hashes) == len(people)  # a body hash per message: the bodies differ


@given(
    st.lists(st.binary(max_size=90).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
             min_size=1, max_size=14),
    st.sampled_from([0, 14]), st.booleans(),
)  # fmt: skip
@settings(max_examples=400, deadline=None)
def test_fold_is_dkimpys(words: list[bytes], namelen: int, crlf: bool) -> None:
    """The signature field is folded exactly as dkimpy folds it (dkim.fold)."""
    value = b" ".join(words) + (b"\r\n" if crlf else b"")
    assert fold(value, namelen=namelen) == dkim.fold(value, namelen=namelen)


@given(st.sampled_from(list(AWKWARD_BODIES.values())), st.integers(0, 80), st.booleans())
@settings(max_examples=100, deadline=None)
def test_a_hashed_prefix_gives_the_same_signature(body: bytes, cut: int, wrong: bool) -> None:
    """The body hash from the state after a shared prefix (BodyPrefix, what an issue's bodies
    all start with) is the hash of the whole body; a prefix the body does not start with is
    not used. Both signatures verify with dkimpy."""
    signer = DkimSigner("example.org", "s1", *parse_key(rsa_pem_once()))
    message = AWKWARD_HEAD + b"\r\n" + body * 3
    start = message.index(b"\r\n\r\n") + 4
    shared = message[start : start + cut]
    if wrong:
        shared = shared[:-1] + b"#" if shared else b"#"
    prefix = signer.body_prefix(shared)
    assert prefix is not None
    with_prefix = signer.sign(message, timestamp=1_780_000_000, prefix=prefix)
    assert with_prefix == signer.sign(message, timestamp=1_780_000_000)
    assert dkim.verify(with_prefix, dnsfunc=dns_for(signer))
    relaxed = DkimSigner("example.org", "s1", signer.algorithm, signer.private_key,
                         canonicalize=(b"relaxed", b"relaxed"))  # fmt: skip
    assert relaxed.body_prefix(shared) is None  # a relaxed body is canonicalised first


_RSA_ONCE: list[bytes] = []


def rsa_pem_once() -> bytes:
    if not _RSA_ONCE:
        _RSA_ONCE.append(rsa_pem())
    return _RSA_ONCE[0]
