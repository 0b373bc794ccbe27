"""DKIM signatures (RFC 6376) for digest messages: RSA-SHA256 or Ed25519-SHA256 (RFC 8463).

The key is read and parsed once per issue (`load_signer`); `DkimSigner.sign` runs once per
message, as the last step of `MessageTemplate.render`, on the connection's thread. The
canonicalisation and hashing are digest's own (below, RFC 6376 §3.4 and §3.7) and the
signature is OpenSSL's through `cryptography`, which releases the GIL while it signs:
dkimpy's pure-Python RSA took ~5.7 ms a message, OpenSSL takes ~0.25 ms. The signature is
byte for byte the one dkimpy makes (same tags, same folding, same hash input), and dkimpy
verifies every message of a signed test send (tests/test_compose_dkim.py). dkimpy itself is
imported only to verify (`digest check`): its import alone cost 70–120 ms a send.

The header list covers what a receiver and the bulk-sender rules look at, including the
one-click unsubscribe headers (RFC 8058 §4 asks for List-Unsubscribe and List-Unsubscribe-Post to
be signed). From is signed twice ("oversigned") so that a second From added on the way breaks
the signature.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

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

_WSP = re.compile(rb"[ \t]+")
_WSP_EOL = re.compile(rb"[ \t]+\r\n")
_FOLD = re.compile(rb"\r?\n")
# The value of b= (after "b=", up to the end), removed for hashing (RFC 6376 §3.5, b=).
_B_TAG = re.compile(rb"([;\s]b(?:(?:\s*\r?\n)?\s+)?=)(?:(?:(?:\s*\r?\n)?\s+)?[a-zA-Z0-9+/=])*")
_SIG_NAME = b"DKIM-Signature"


def header_fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """(name, value) of each field of a header block (CRLF line ends, no final CRLF); a value
    keeps its folds. A line that is neither a field nor a continuation is left out."""
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if fields:
                name, value = fields[-1]
                fields[-1] = (name, value + b"\r\n" + line)
            continue
        name, colon, value = line.partition(b":")
        if colon:
            fields.append((name, value))
    return fields


def relaxed_header(name: bytes, value: bytes) -> bytes:
    """`name:value` canonicalised "relaxed" (RFC 6376 §3.4.2), without the CRLF: the name in
    lower case, the value unfolded, runs of WSP as one space, no WSP at either end."""
    name = name.lower().rstrip()
    if b"\n" not in value and b"\t" not in value and b"  " not in value:
        return name + b":" + value.strip()  # the common case: one line, single spaces
    return name + b":" + _WSP.sub(b" ", _FOLD.sub(b"", value)).strip()


def canonical_body(body: bytes, method: bytes) -> bytes:
    """The body canonicalised "simple" (§3.4.3) or "relaxed" (§3.4.4)."""
    if method == b"relaxed":
        body = _WSP.sub(b" ", _WSP_EOL.sub(b"\r\n", body))
    end = len(body)
    while body.endswith(b"\r\n", 0, end):  # no empty lines at the end
        end -= 2
    if end == 0:
        return b"" if method == b"relaxed" else b"\r\n"
    return body[: end + 2] if end < len(body) else body + b"\r\n"


def fold(value: bytes, namelen: int = 0) -> bytes:
    """A tag list folded at spaces so that no line passes 72 characters (the field name on the
    first line counts), a run with no space cut where it must: dkimpy's `fold`, so that the
    signature field is laid out byte for byte as dkimpy lays it out."""
    width = 72 - namelen
    if len(value) <= width:
        return value
    if len(value) - value.rfind(b"\r\n") == 2 and len(value) <= width + 2:
        return value
    i = value.rfind(b"\r\n ")
    if i == -1:
        pre = b""
    else:
        pre, value = value[: i + 3], value[i + 3 :]
    while len(value) > width:
        i = value[:width].rfind(b" ")
        if i == -1:
            pre += value[:width] + b"\r\n "
            value = value[width:]
        else:
            pre += value[:i] + b"\r\n "
            value = value[i + 1 :]
        width = 71
    return pre + value


@dataclass(frozen=True, slots=True)
class BodyPrefix:
    """The start every body of an issue shares (its text part up to the first per-recipient
    link, ~12 KB), with the SHA-256 state after it: each message hashes only the rest."""

    data: bytes
    state: Any  # hashlib's SHA-256 object, copied for each message

    @classmethod
    def of(cls, data: bytes) -> BodyPrefix:
        return cls(data, hashlib.sha256(data))


def body_hash(message: bytes, start: int, method: bytes, prefix: BodyPrefix | None = None) -> bytes:
    """The base64 SHA-256 of the canonical body, `message[start:]`: a "simple" body is hashed
    where it lies (a memoryview, no copy of the 30–80 KB), from the state after `prefix` when
    the body starts with it."""
    if method == b"relaxed":
        digest = hashlib.sha256(canonical_body(message[start:], method)).digest()
        return base64.b64encode(digest)
    end = len(message)
    while message.endswith(b"\r\n", start, end):  # no empty lines at the end
        end -= 2
    if prefix is not None and message.startswith(prefix.data, start, end):
        h = prefix.state.copy()
        h.update(memoryview(message)[start + len(prefix.data) : end])
    else:
        h = hashlib.sha256(memoryview(message)[start:end])
    h.update(b"\r\n")
    return base64.b64encode(h.digest())


def select_fields(
    fields: list[tuple[bytes, bytes]], names: tuple[bytes, ...]
) -> list[tuple[bytes, bytes]]:
    """The fields `names` signs, in that order; a name given twice takes the next instance up
    from the bottom (§5.4.2), and one with no instance left stands for nothing."""
    chosen = []
    last: dict[bytes, int] = {}
    lowered = [f[0].lower() for f in fields]
    for name in names:
        i = last.get(name, len(fields))
        while i > 0:
            i -= 1
            if lowered[i] == name:
                chosen.append(fields[i])
                break
        last[name] = i
    return chosen


@dataclass(frozen=True, slots=True)
class Unsigned:
    """A message ready for its signature: DkimSigner.prepare, then `signed`."""

    tags: bytes  # the DKIM-Signature's tags, up to and including "b="
    digest: bytes  # the SHA-256 of the header fields the signature covers
    message: bytes

    def signed(self, signature: bytes) -> bytes:
        """The message with its DKIM-Signature header field in front."""
        value = base64.b64encode(signature)
        return (
            _SIG_NAME
            + b": "
            + fold(self.tags + value + b"\r\n", namelen=len(_SIG_NAME))
            + self.message
        )


@dataclass(frozen=True)
class DkimSigner:
    """Signs finished messages for one domain and selector with one key."""

    domain: str
    selector: str
    algorithm: bytes  # RSA or ED25519
    private_key: bytes  # PEM for RSA, the base64 seed for Ed25519 (as dkimpy takes them)
    # relaxed headers (folding may change on the way); simple body: ours is quoted-printable
    # with CRLF and short lines, which relays leave alone, and it costs nothing to canonicalise.
    canonicalize: tuple[bytes, bytes] = (b"relaxed", b"simple")

    @cached_property
    def _key(self) -> RSAPrivateKey | Ed25519PrivateKey:
        if self.algorithm == ED25519:
            return Ed25519PrivateKey.from_private_bytes(base64.b64decode(self.private_key))
        key = serialization.load_pem_private_key(self.private_key, password=None)
        assert isinstance(key, RSAPrivateKey)
        return key

    @cached_property
    def _tags(self) -> tuple[bytes, bytes]:
        """The tags before t= and between t= and bh=, as dkimpy writes them."""
        domain = self.domain.encode("ascii")
        head = b"v=1; a=%s; c=%s; d=%s; i=@%s; q=dns/txt; s=%s; t=" % (
            self.algorithm, b"/".join(self.canonicalize), domain, domain,
            self.selector.encode("ascii"),
        )  # fmt: skip
        return head, b"; h=" + b" : ".join(SIGNED_HEADERS) + b"; bh="

    @cached_property
    def _canonical(self) -> dict[tuple[bytes, bytes], bytes]:
        """Relaxed forms of header fields already seen (From, Subject, Date… of this issue)."""
        return {}

    def sign(
        self, message: bytes, *, timestamp: int | None = None, prefix: BodyPrefix | None = None
    ) -> bytes:
        """The message (CRLF line ends) with a DKIM-Signature header field in front of it.
        `timestamp`: t=, the signing time in seconds (now when None)."""
        unsigned = self.prepare(message, timestamp=timestamp, prefix=prefix)
        return unsigned.signed(self.sign_digest(unsigned.digest))

    def prepare(
        self, message: bytes, *, timestamp: int | None = None, prefix: BodyPrefix | None = None
    ) -> Unsigned:
        """Everything of `sign` but the private-key operation: the tags, the body hash and
        the SHA-256 of the header fields the key signs (`Unsigned.digest`), so the signature
        itself can be made elsewhere (digest.send.signers) and put on with `Unsigned.signed`.
        `prefix`: how every body of the issue starts, already hashed (body_prefix)."""
        blank = message.find(b"\r\n\r\n")
        head = message[:blank] if blank >= 0 else message.removesuffix(b"\r\n")
        start = blank + 4 if blank >= 0 else len(message)
        fields = header_fields(head)
        bh = body_hash(message, start, self.canonicalize[1], prefix)
        before_t, before_bh = self._tags
        when = b"%d" % (int(time.time()) if timestamp is None else timestamp)
        tags = before_t + when + before_bh + bh + b"; b="
        # b= first holds 60 characters, so that it folds onto a line of its own and the real
        # value does not move the folds before it (dkimpy's layout, which receivers accept).
        folded = fold(tags + b"0" * 60, namelen=len(_SIG_NAME))
        if folded.endswith(b"b=" + b"0" * 60):
            unsigned = folded[:-60]  # b= left empty, as for hashing (§3.5); the regex costs 35 µs
        else:
            unsigned = _B_TAG.sub(rb"\1", folded)
        relaxed = self.canonicalize[0] == b"relaxed"
        seen = self._canonical
        if len(seen) > 64:  # holds the fields every message of an issue shares
            seen.clear()
        signed = []
        for n, v in select_fields(fields, SIGNED_HEADERS):
            if not relaxed:
                signed.append(n + b":" + v)
            elif (c := seen.get((n, v))) is not None:
                signed.append(c)
            else:
                signed.append(c := relaxed_header(n, v))
                seen[(n, v)] = c
        sig_field = (
            relaxed_header(_SIG_NAME, b" " + unsigned)
            if relaxed
            else (_SIG_NAME + b": " + unsigned)
        )
        data = b"\r\n".join(signed) + b"\r\n" + sig_field.rstrip()
        return Unsigned(tags, hashlib.sha256(data).digest(), message)

    def body_prefix(self, data: bytes) -> BodyPrefix | None:
        """`data`, how every body to be signed starts, hashed once (None for a relaxed body,
        which is hashed after canonicalisation)."""
        return BodyPrefix.of(data) if self.canonicalize[1] == b"simple" else None

    def sign_digest(self, digest: bytes) -> bytes:
        """The signature of header fields whose SHA-256 is `digest`: RSA PKCS#1 v1.5 over the
        SHA-256 (the same bytes as signing the fields themselves: v1.5 is deterministic), or
        Ed25519 of the SHA-256 (RFC 8463 §3)."""
        key = self._key
        if isinstance(key, RSAPrivateKey):
            return key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        return key.sign(digest)

    def check_digest(self, signature: bytes, digest: bytes) -> bool:
        """Whether `signature` is this key's signature of `digest` (as sign_digest makes it)."""
        from cryptography.exceptions import InvalidSignature

        public = self._key.public_key()
        try:
            if isinstance(public, RSAPublicKey):
                public.verify(signature, digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
            else:
                public.verify(signature, digest)
        except InvalidSignature:
            return False
        return True

    @property
    def key_type(self) -> str:
        return "ed25519" if self.algorithm == ED25519 else "rsa"

    def public_key(self) -> str:
        """The base64 public key: the p= of the DNS record (RFC 6376 §3.6.1: for RSA a
        SubjectPublicKeyInfo; RFC 8463 §4: for Ed25519 the 32 bytes of the key)."""
        public = self._key.public_key()
        if isinstance(public, RSAPublicKey):
            raw = public.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        else:
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode("ascii")

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

        import dkim  # dkimpy: only to check (digest check), never on the send path

        return bool(dkim.verify(message, dnsfunc=dnsfunc))


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
        pk = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where} is not a usable RSA private key: {exc}") from None
    if not isinstance(pk, RSAPrivateKey):
        raise ConfigError(f"{where} is not an RSA or Ed25519 private key")
    if pk.key_size < 1024:
        raise ConfigError(f"{where} is a {pk.key_size}-bit RSA key; use 2048 bits")
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
    try:
        signer.public_key()  # OpenSSL reads the key now, not at the first message
    except ValueError as exc:
        raise ConfigError(
            f"dkim_private_key_file {path}: OpenSSL cannot use the key: {exc}"
        ) from None
    return signer
