"""Signed, purpose-bound tokens for public links: unsubscribe (no expiry) and confirm (expiring).

An unsubscribe token is `<key id>_<subscriber uid>_<signature>`: the signature is an
HMAC-SHA256 over the purpose and the uid with the secret key, so a token for one purpose or
one person is useless for another, and cannot be made without the key. Verification is
constant-time. The key id (8 hex characters, derived one way from the key) names the key that
signed it, so a link made with a key that was since rotated out is recognised: verified with
that retired key (unsubscribe links must always work), or at least reported as such.

The underscores keep the token one word to a content filter: a run of 32 hex characters
starting with 1 or 3 between word boundaries looks like a Bitcoin address to SpamAssassin
(__BITCOIN_ID, PDS_BTC_ID), and the uid alone is such a run one time in sixty. Inside
`x_<uid>_y` no word boundary comes before it.

A timed token (`make_timed_token`, used for 'confirm') is `<key id>_<uid>_<issued, base 36>_<sig>`,
the signature also covering the time, so it can be refused once older than its lifetime.

Tokens of the first format (`<uid>.<sig>` and `<uid>.<issued>.<sig>`, no key id) are in mail
already sent: they are still read, and tried with every key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

# The unsubscribe "token" of test and review copies: it names nobody.
TEST_COPY_TOKEN = "test-copy"  # noqa: S105 (not a secret)
_SIG_BYTES = 16  # 128 bits: unguessable, and keeps links short
_MAX_TOKEN = 200


@lru_cache(maxsize=16)  # every link of a send names the same key
def key_id(key: bytes) -> str:
    """A short public name for a key (8 hex characters), derived from it one way."""
    return hmac.new(key, b"digest:key-id", hashlib.sha256).hexdigest()[:8]


@dataclass(frozen=True)
class Keyring:
    """The key that signs now, and retired keys that still verify what they signed."""

    current: bytes
    retired: tuple[bytes, ...] = ()

    @property
    def current_id(self) -> str:
        return key_id(self.current)

    def all_keys(self) -> tuple[bytes, ...]:
        """Every key, the current one first."""
        return (self.current, *(k for k in self.retired if k != self.current))

    def by_id(self, kid: str) -> bytes | None:
        return next((k for k in self.all_keys() if key_id(k) == kid), None)


def _keyring(keys: Keyring | bytes) -> Keyring:
    return keys if isinstance(keys, Keyring) else Keyring(keys)


@lru_cache(maxsize=64)
def _keyed(key: bytes, prefix: bytes) -> hmac.HMAC:
    """An HMAC-SHA256 with this key that has taken in `prefix`, to be copied."""
    return hmac.new(key, prefix, hashlib.sha256)


def keyed_mac(key: bytes, prefix: str, rest: str) -> bytes:
    """HMAC-SHA256(key, prefix + rest), the same bytes as hmac.digest. A send makes four
    tokens a message, all with one key and a few prefixes: the keyed state after the prefix
    is kept and copied, which costs half of hashing the key in again every time."""
    mac = _keyed(key, prefix.encode()).copy()
    mac.update(rest.encode())
    return mac.digest()


def _b64(mac: bytes) -> str:
    return base64.urlsafe_b64encode(mac[:_SIG_BYTES]).rstrip(b"=").decode()


def _sign(key: bytes, purpose: str, payload: str) -> str:
    return _b64(keyed_mac(key, f"digest:2:{purpose}:", payload))


def _sign_v1(key: bytes, purpose: str, payload: str) -> str:
    return _b64(keyed_mac(key, f"digest:{purpose}:", payload))


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class TokenCheck:
    """What a token turned out to be. `uid` is set only when it is valid."""

    uid: str | None
    key_id: str | None = None  # the key it names (None: first format, or unreadable)
    retired: bool = False  # valid, signed by a retired key
    unknown_key: bool = False  # well-formed, but names a key this keyring does not have

    @property
    def valid(self) -> bool:
        return self.uid is not None


def make_token(key: bytes, purpose: str, uid: str) -> str:
    return f"{key_id(key)}_{uid}_{_sign(key, purpose, uid)}"


def check_token(
    keys: Keyring | bytes, purpose: str, token: str, *, retired_ok: bool = True
) -> TokenCheck:
    """Verify an untimed token with the key it names (a retired one only if `retired_ok`)."""
    ring = _keyring(keys)
    if len(token) > _MAX_TOKEN:
        return TokenCheck(None)
    if "." in token:  # the first format: no key id, try the keys
        uid, sep, sig = token.partition(".")
        if not sep or not uid:
            return TokenCheck(None)
        for n, key in enumerate(ring.all_keys() if retired_ok else (ring.current,)):
            if _same(_sign_v1(key, purpose, uid), sig):
                return TokenCheck(uid, key_id(key), retired=n > 0)
        return TokenCheck(None)
    kid, sep1, rest = token.partition("_")
    uid, sep2, sig = rest.partition("_")
    if not (sep1 and sep2 and uid and sig) or len(kid) != 8:
        return TokenCheck(None)
    return _verify(ring, kid, purpose, uid, sig, retired_ok)


def _verify(
    ring: Keyring, kid: str, purpose: str, payload: str, sig: str, retired_ok: bool
) -> TokenCheck:
    key = ring.by_id(kid)
    if key is None:
        return TokenCheck(None, kid, unknown_key=True)
    retired = key != ring.current
    if retired and not retired_ok:
        return TokenCheck(None, kid, retired=True)
    if not _same(_sign(key, purpose, payload), sig):
        return TokenCheck(None, kid)
    return TokenCheck(payload.partition("_")[0], kid, retired=retired)


def read_token(keys: Keyring | bytes, purpose: str, token: str) -> str | None:
    """The subscriber uid a valid token names, or None for anything tampered or foreign."""
    return check_token(keys, purpose, token).uid


_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_CLOCK_SKEW = timedelta(minutes=5)  # several web workers may disagree a little about the time


def b36(n: int) -> str:
    """A whole number in lowercase base 36 (short, case-insensitive-safe)."""
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _DIGITS[r] + out
        if not n:
            return out


def make_timed_token(key: bytes, purpose: str, uid: str, *, now: datetime) -> str:
    """A token for `purpose` that also records when it was made (whole seconds, UTC)."""
    payload = f"{uid}_{b36(int(now.timestamp()))}"
    return f"{key_id(key)}_{payload}_{_sign(key, purpose + '@timed', payload)}"


def check_timed_token(
    keys: Keyring | bytes,
    purpose: str,
    token: str,
    *,
    max_age: timedelta,
    now: datetime,
    retired_ok: bool = False,
) -> tuple[TokenCheck, datetime | None]:
    """(check, issued at) of a timed token; valid only when no older than `max_age`."""
    ring = _keyring(keys)
    if len(token) > _MAX_TOKEN:
        return TokenCheck(None), None
    if "." in token:  # the first format: <uid>.<stamp>.<sig>
        uid, sep1, rest = token.partition(".")
        stamp, sep2, sig = rest.partition(".")
        if not (sep1 and sep2 and uid and _stamp_ok(stamp)):
            return TokenCheck(None), None
        keys_to_try = ring.all_keys() if retired_ok else (ring.current,)
        found = next(
            (k for k in keys_to_try
             if _same(_sign_v1(k, purpose + "@timed", f"{uid}.{stamp}"), sig)),
            None,
        )  # fmt: skip
        check = TokenCheck(uid, key_id(found)) if found else TokenCheck(None)
    else:
        kid, sep1, rest = token.partition("_")
        uid, sep2, rest = rest.partition("_")
        stamp, sep3, sig = rest.partition("_")
        if not (sep1 and sep2 and sep3 and uid and sig and _stamp_ok(stamp)) or len(kid) != 8:
            return TokenCheck(None), None
        check = _verify(ring, kid, purpose + "@timed", f"{uid}_{stamp}", sig, retired_ok)
    if not check.valid:
        return check, None
    issued = datetime.fromtimestamp(int(stamp, 36), UTC)
    if issued > now + _CLOCK_SKEW or now - issued > max_age:
        return TokenCheck(None, check.key_id), issued
    return check, issued


def _stamp_ok(stamp: str) -> bool:
    return 0 < len(stamp) <= 10 and all(ch in _DIGITS for ch in stamp)


def read_timed_token(
    keys: Keyring | bytes, purpose: str, token: str, *, max_age: timedelta, now: datetime
) -> tuple[str, datetime] | None:
    """(uid, issued at) of a valid token no older than `max_age`; None for anything else."""
    check, issued = check_timed_token(keys, purpose, token, max_age=max_age, now=now)
    if check.uid is None or issued is None:
        return None
    return check.uid, issued
