"""DKIM signatures (RFC 6376) for digest messages, with dkimpy: RSA-SHA256 or Ed25519-SHA256
(RFC 8463).

The key is read and parsed once per issue (`load_signer`); `DkimSigner.sign` runs once per
message, as the last step of `MessageTemplate.render`. The header list covers what a
receiver and the bulk-sender rules look at, including the one-click unsubscribe headers
(RFC 8058 §4 asks for List-Unsubscribe and List-Unsubscribe-Post to be signed). From is signed
twice ("oversigned") so that a second From added on the way breaks the signature.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dkim
from dkim.crypto import UnparsableKeyError, parse_pem_private_key

from digest.errors import ConfigError

if TYPE_CHECKING:
    from digest.config import Settings

SIGNED_HEADERS = (
    b"from", b"from", b"to", b"subject", b"date", b"message-id", b"reply-to", b"list-id",
    b"list-unsubscribe", b"list-unsubscribe-post", b"mime-version", b"content-type",
)  # fmt: skip
RSA = b"rsa-sha256"
ED25519 = b"ed25519-sha256"
# The OID 1.3.101.112 (Ed25519) as it appears in a PKCS#8 "BEGIN PRIVATE KEY" file.
_ED25519_OID = b"\x06\x03\x2b\x65\x70"
_PEM = re.compile(rb"-----BEGIN ([A-Z ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)


@dataclass(frozen=True)
class DkimSigner:
    """Signs finished messages for one domain and selector with one key."""

    domain: str
    selector: str
    algorithm: bytes  # RSA or ED25519
    private_key: bytes  # as dkimpy takes it: PEM for RSA, the base64 seed for Ed25519
    # relaxed headers (folding may change on the way); simple body: ours is quoted-printable
    # with CRLF and short lines, which relays leave alone, and it costs nothing to canonicalise.
    canonicalize: tuple[bytes, bytes] = (b"relaxed", b"simple")

    def sign(self, message: bytes) -> bytes:
        """The message (CRLF line ends) with a DKIM-Signature header field in front of it."""
        # dkimpy splits the whole message into lines to find the headers; ours are known to end
        # at the first empty line, and the body is already CRLF, so only the head is parsed.
        head, _, body = message.partition(b"\r\n\r\n")
        d = dkim.DKIM(head + b"\r\n\r\n", signature_algorithm=self.algorithm, linesep=b"\r\n")
        d.body = body
        signature = d.sign(
            self.selector.encode("ascii"),
            self.domain.encode("ascii"),
            self.private_key,
            canonicalize=self.canonicalize,
            include_headers=list(SIGNED_HEADERS),
        )
        return bytes(signature) + message

    @property
    def key_type(self) -> str:
        return "ed25519" if self.algorithm == ED25519 else "rsa"

    def public_key(self) -> str:
        """The base64 public key: the p= of the DNS record."""
        if self.algorithm == ED25519:
            import nacl.encoding
            import nacl.signing

            seed = nacl.signing.SigningKey(self.private_key, encoder=nacl.encoding.Base64Encoder)
            return seed.verify_key.encode(encoder=nacl.encoding.Base64Encoder).decode("ascii")
        pk = parse_pem_private_key(self.private_key)
        # p= is a SubjectPublicKeyInfo holding the RSAPublicKey (RFC 6376 §3.6.1, RFC 8017 A.1.1).
        der = _der(0x30, _der_int(pk["modulus"]) + _der_int(pk["publicExponent"]))
        return base64.b64encode(_spki_rsa(der)).decode("ascii")

    def dns_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    def dns_record(self) -> str:
        """The TXT record to publish at dns_name()."""
        return f"v=DKIM1; k={self.key_type}; p={self.public_key()}"

    def verify(self, message: bytes) -> bool:
        """Whether the message's signature verifies against this signer's own public key
        (no DNS: the record is the one dns_record() says to publish)."""
        record = self.dns_record().encode("ascii")
        expected = self.dns_name().encode("ascii") + b"."

        def dnsfunc(name: Any, timeout: int = 5) -> bytes | None:
            name = name if isinstance(name, bytes) else str(name).encode()
            return record if name.rstrip(b".") + b"." == expected else None

        return bool(dkim.verify(message, dnsfunc=dnsfunc))


# DER by hand: dkimpy's asn1 module parses keys but cannot build INTEGERs or long lengths.
def _der(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(content)) + content


def _der_int(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8, "big")  # a leading 0 keeps it positive
    return _der(0x02, raw)


def _spki_rsa(rsa_public_key: bytes) -> bytes:
    """SubjectPublicKeyInfo for an RSA key (OID 1.2.840.113549.1.1.1), as OpenSSL writes it."""
    algorithm = _der(0x30, b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01\x05\x00")
    return _der(0x30, algorithm + _der(0x03, b"\x00" + rsa_public_key))


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def parse_key(data: bytes, *, where: str = "the DKIM key") -> tuple[bytes, bytes]:
    """(algorithm, key as dkimpy takes it) from a key file's bytes.

    Accepts an RSA key in PEM (PKCS#1 "RSA PRIVATE KEY" or PKCS#8 "PRIVATE KEY"), an Ed25519
    key in PKCS#8 PEM (`openssl genpkey -algorithm ed25519`), or the base64 32-byte Ed25519
    seed that dkimpy's `dknewkey --ktype ed25519` writes.
    """
    data = data.strip()
    match = _PEM.search(data)
    if match is None:
        try:
            seed = base64.b64decode(data, validate=True)
        except ValueError:
            seed = b""
        if len(seed) == 32:
            return ED25519, base64.b64encode(seed)
        raise ConfigError(
            f"{where} is neither a PEM private key nor a base64 Ed25519 key",
            hint="Make one with `openssl genrsa 2048` or `openssl genpkey -algorithm ed25519`.",
        )
    try:
        der = base64.b64decode(b"".join(match.group(2).split()))
    except ValueError:
        raise ConfigError(f"{where}: the PEM block is not valid base64") from None
    if match.group(1) == b"PRIVATE KEY" and _ED25519_OID in der[:16]:
        # PKCS#8 (RFC 8410): ... OCTET STRING { OCTET STRING (32 bytes) } at the end.
        return ED25519, base64.b64encode(der[-32:])
    if match.group(1) not in (b"RSA PRIVATE KEY", b"PRIVATE KEY"):
        raise ConfigError(f"{where}: a {match.group(1).decode()} is not a private key")
    pem = b"-----BEGIN %s-----\n%s\n-----END %s-----\n" % (
        match.group(1), b"\n".join(match.group(2).split()), match.group(1),
    )  # fmt: skip
    try:
        pk = parse_pem_private_key(pem)
    except UnparsableKeyError as exc:
        raise ConfigError(f"{where} is not a usable RSA private key: {exc}") from None
    if pk["modulus"].bit_length() < 1024:
        raise ConfigError(f"{where} is a {pk['modulus'].bit_length()}-bit RSA key; use 2048 bits")
    return RSA, pem


def load_signer(settings: Settings) -> DkimSigner | None:
    """The signer the settings describe, or None when DKIM is not configured.

    The key file must be readable by its owner only, like every other secret.
    """
    if not (settings.dkim_domain and settings.dkim_selector and settings.dkim_private_key_file):
        return None
    from digest.secret_files import read_secret_file

    path = settings.dkim_private_key_file
    text = read_secret_file(path, "dkim_private_key_file")
    if not text:
        raise ConfigError(f"dkim_private_key_file: {path} is empty")
    algorithm, key = parse_key(
        text.encode("ascii", "replace"), where=f"dkim_private_key_file {path}"
    )
    domain, selector = settings.dkim_domain.lower(), settings.dkim_selector
    signer = DkimSigner(domain=domain, selector=selector, algorithm=algorithm, private_key=key)
    if algorithm == ED25519:
        try:
            import nacl.signing  # noqa: F401
        except ImportError:
            raise ConfigError(
                "an Ed25519 DKIM key needs PyNaCl", hint="pip install 'dkimpy[ed25519]'"
            ) from None
    return signer
