"""Signed, purpose-bound tokens for public links (unsubscribe now; confirm later).

A token is `<subscriber uid>.<signature>`: the signature is an HMAC-SHA256 over the purpose and
the uid with the secret key, so a token for one purpose or one person is useless for another,
and cannot be made without the key. Verification is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

_SIG_BYTES = 16  # 128 bits: unguessable, and keeps links short


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
