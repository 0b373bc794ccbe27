"""DKIM keys made on the spot (RSA and Ed25519), the golden issue signed with one, and the
DNS answer dkimpy needs to verify it (never a real DNS query)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from digest.compose.dkim import DkimSigner
from digest.compose.wire import MessageTemplate, Recipient

from .render import MSG, render_fixed


def rsa_pem(pkcs8: bool = False) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fmt = (
        serialization.PrivateFormat.PKCS8
        if pkcs8
        else serialization.PrivateFormat.TraditionalOpenSSL
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def ed25519_pem() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def signed_message(signer: DkimSigner, n: int = 1) -> bytes:
    """Issue 7 for reader N, signed by `signer`."""
    r = render_fixed()
    template = MessageTemplate(
        settings=MSG, subject=r.subject, html_body=r.html, text_body=r.text,
        date=datetime(2026, 11, 27, 8, 0, tzinfo=UTC), signer=signer,
    )  # fmt: skip
    return template.render(
        Recipient(
            f"reader{n}@example.net",
            "Ana Jones",
            f"<digest.7.{n}@example.org>",
            f"https://news.example.org/unsubscribe/sub{n}.SIG",
        )
    )


def dns_for(signer: DkimSigner) -> Callable[..., bytes | None]:
    """A dkimpy dnsfunc that answers with the signer's own public key record."""
    record = signer.dns_record().encode()

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == f"{signer.selector}._domainkey.{signer.domain}.".encode() else None

    return dnsfunc


def dkim_settings(folder: Path, key: bytes, **more: str) -> dict[str, str]:
    """DIGEST_* for signing as partnership.example.org (selector news2026) with `key`, written
    to folder/dkim.key, owner-only as digest requires; `more`: other settings, without the
    DIGEST_ prefix (SMTP_CONNECTIONS="4")."""
    path = folder / "dkim.key"
    path.write_bytes(key)
    path.chmod(0o600)
    values = {"DKIM_DOMAIN": "partnership.example.org", "DKIM_SELECTOR": "news2026",
              "DKIM_PRIVATE_KEY_FILE": str(path), **more}  # fmt: skip
    return {f"DIGEST_{name}": value for name, value in values.items()}
