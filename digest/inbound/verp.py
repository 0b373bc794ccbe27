"""Delivery tokens: which one delivery (issue and subscriber) a bounce or an emailed
unsubscribe is about, bound to the secret key so that nobody else can make one.

A token is `<issue number, base 36>-<subscriber uid, base 32>-<signature, base 32>`, all in
lower case: 41 to 44 characters of letters, digits and '-', so it is safe in a URL, in the
local part of an address (`bounces+TOKEN@domain`, VERP) and through MTAs that lowercase local
parts. The signature is an HMAC-SHA256 over the purpose, the issue and the uid, cut to 64 bits:
a report cannot be forged without the key, and a token for a bounce address does not work as an
unsubscribe request. Parsing is case-insensitive and constant-time in the signature check.
"""

from __future__ import annotations

import base64
import hmac
import re
from dataclasses import dataclass
from email.utils import parseaddr
from functools import lru_cache
from urllib.parse import unquote

from digest.tokens import Keyring, b36, keyed_mac

BOUNCE = "verp"  # the envelope sender of one delivery
UNSUBSCRIBE = "unsubscribe-mail"  # the mailto: of List-Unsubscribe

_SIG_BYTES = 8

TOKEN_RE = re.compile(r"\b([0-9a-z]{1,4})-([a-z2-7]{26})-([a-z2-7]{13})\b", re.IGNORECASE)
MAX_TOKEN_LEN = 4 + 1 + 26 + 1 + 13
MAX_LOCAL_PART = 64  # RFC 5321 §4.5.3.1.1


@dataclass(frozen=True, slots=True)
class DeliveryRef:
    """What a valid token names: an issue (by number) and a subscriber (by uid)."""

    issue_number: int
    subscriber_uid: str


_B32_PAIRS = [
    a + b for a in "abcdefghijklmnopqrstuvwxyz234567" for b in "abcdefghijklmnopqrstuvwxyz234567"
]


def _b32(data: bytes) -> str:
    """RFC 4648 base32 in lower case without padding, two characters (10 bits) at a time:
    base64.b32encode is Python code, and a send makes two tokens per recipient."""
    bits = len(data) * 8
    chars = -(-bits // 5)
    pairs = -(-chars // 2)
    n = int.from_bytes(data, "big") << (pairs * 10 - bits)
    return "".join([_B32_PAIRS[(n >> s) & 1023] for s in range(pairs * 10 - 10, -1, -10)])[:chars]


def _unb32(text: str) -> bytes:
    text = text.upper()
    return base64.b32decode(text + "=" * (-len(text) % 8))


def _sign(key: bytes, purpose: str, issue_number: int, uid: str) -> str:
    return _b32(keyed_mac(key, f"digest:{purpose}:", f"{issue_number}:{uid}")[:_SIG_BYTES])


def make_delivery_token(key: bytes, purpose: str, issue_number: int, subscriber_uid: str) -> str:
    """The token of one delivery. `subscriber_uid` is the 32 hex digits of Subscriber.uid."""
    if issue_number < 0 or issue_number >= 36**4:
        raise ValueError(f"issue number {issue_number} out of range for a token")
    raw = bytes.fromhex(subscriber_uid)  # ValueError for anything that is not hex
    if len(raw) != 16:
        raise ValueError("a subscriber uid has 32 hex digits")
    uid = subscriber_uid.lower()
    return f"{b36(issue_number)}-{_b32(raw)}-{_sign(key, purpose, issue_number, uid)}"


def read_delivery_token(keys: Keyring | bytes, purpose: str, token: str) -> DeliveryRef | None:
    """The delivery a valid token names, or None for anything tampered, foreign or malformed.

    With a Keyring, a token signed by a retired key is still good: digests already in
    inboxes keep unsubscribing and bouncing after the key changes."""
    match = TOKEN_RE.fullmatch(token.strip())
    if match is None:
        return None
    issue_part, uid_part, sig = (g.lower() for g in match.groups())
    try:
        uid = _unb32(uid_part).hex()
    except ValueError:
        return None
    issue_number = int(issue_part, 36)
    ring = keys if isinstance(keys, Keyring) else Keyring(keys)
    for key in ring.all_keys():
        expected = _sign(key, purpose, issue_number, uid)
        if hmac.compare_digest(expected.encode(), sig.encode()):
            return DeliveryRef(issue_number, uid)
    return None


@lru_cache(maxsize=64)  # a send splits the same bounce address for every recipient
def split_address(address: str) -> tuple[str, str]:
    """(local part, domain) of a bare address, the domain in lower case."""
    local, _, domain = parseaddr(address)[1].rpartition("@")
    return local, domain.lower()


def verp_address(bounce_address: str, token: str) -> str:
    """`local+TOKEN@domain` for the bounce address `local@domain` (the envelope sender)."""
    local, domain = split_address(bounce_address)
    return f"{local}+{token}@{domain}"


def check_bounce_address(value: str) -> str:
    """The bare bounce address, or ValueError when a token cannot fit in its local part."""
    local, domain = split_address(value)
    if not local or not domain or "+" in local:
        raise ValueError(
            f"{value!r} is not a plain address such as bounces@example.org (no '+' in it: "
            "digest adds +TOKEN itself)"
        )
    if len(local) + 1 + MAX_TOKEN_LEN > MAX_LOCAL_PART:
        raise ValueError(
            f"the local part {local!r} is too long: with '+' and a token it must fit in "
            f"{MAX_LOCAL_PART} characters (at most {MAX_LOCAL_PART - 1 - MAX_TOKEN_LEN})"
        )
    return f"{local}@{domain}"


def tokens_in_text(text: str) -> list[str]:
    """Every token-shaped string in `text` (a Subject, a mailto: link), valid or not.

    URL escapes are undone first: in `?subject=unsubscribe%20TOKEN` the token follows "%20".
    """
    return ["-".join(m.groups()) for m in TOKEN_RE.finditer(unquote(text))]
