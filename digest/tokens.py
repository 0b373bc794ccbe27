"""Signed, purpose-bound tokens for public links: unsubscribe (no expiry) and confirm (expiring).

An unsubscribe token is `<subscriber uid>.<signature>`: the signature is an HMAC-SHA256 over the
purpose and the uid with the secret key, so a token for one purpose or one person is useless for
another, and cannot be made without the key. Verification is constant-time. Its format is fixed:
links in mail already sent depend on it.

A timed token (`make_timed_token`, used for 'confirm') is `<uid>.<issued, base 36>.<signature>`,
the signature also covering the time, so it can be refused once older than its lifetime.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_SIG_BYTES = 16  # 128 bits: unguessable, and keeps links short


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


def _sign(key: bytes, purpose: str, uid: str) -> str:
    mac = hmac.new(key, f"digest:{purpose}:{uid}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:_SIG_BYTES]).rstrip(b"=").decode()


def make_token(key: bytes, purpose: str, uid: str) -> str:
    return f"{uid}.{_sign(key, purpose, uid)}"


def read_token(key: bytes, purpose: str, token: str) -> str | None:
    """The subscriber uid a valid token names, or None for anything tampered or foreign."""
    uid, sep, sig = token.partition(".")
    if not sep or not uid or len(token) > 200:
        return None
    expected = _sign(key, purpose, uid)
    if not hmac.compare_digest(expected.encode(), sig.encode()):
        return None
    return uid


_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_CLOCK_SKEW = timedelta(minutes=5)  # several web workers may disagree a little about the time


def _b36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _DIGITS[r] + out
        if not n:
            return out


def make_timed_token(key: bytes, purpose: str, uid: str, *, now: datetime) -> str:
    """A token for `purpose` that also records when it was made (whole seconds, UTC)."""
    payload = f"{uid}.{_b36(int(now.timestamp()))}"
    return f"{payload}.{_sign(key, purpose + '@timed', payload)}"


def read_timed_token(
    key: bytes, purpose: str, token: str, *, max_age: timedelta, now: datetime
) -> tuple[str, datetime] | None:
    """(uid, issued at) of a valid token no older than `max_age`; None for anything else."""
    if len(token) > 200:
        return None
    uid, sep1, rest = token.partition(".")
    stamp, sep2, sig = rest.partition(".")
    if not (sep1 and sep2 and uid and stamp) or len(stamp) > 10:
        return None
    if any(ch not in _DIGITS for ch in stamp):
        return None
    expected = _sign(key, purpose + "@timed", f"{uid}.{stamp}")
    if not hmac.compare_digest(expected.encode(), sig.encode()):
        return None
    issued = datetime.fromtimestamp(int(stamp, 36), UTC)
    if issued > now + _CLOCK_SKEW or now - issued > max_age:
        return None
    return uid, issued
