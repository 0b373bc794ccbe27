"""The signatures of every token (tokens.py, inbound/verp.py) come from `keyed_mac`, which
copies a keyed HMAC state instead of keying a new one: the same bytes as the standard
library's one-shot `hmac.digest`, so links in mail already sent still verify."""

from __future__ import annotations

import base64
import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from digest.compose.recipients import PREFERENCES
from digest.inbound.verp import BOUNCE, UNSUBSCRIBE, make_delivery_token, read_delivery_token
from digest.tokens import key_id, keyed_mac, make_token, read_token


@given(key=st.binary(min_size=1, max_size=200), prefix=st.text(), rest=st.text())
def test_keyed_mac_is_hmac_sha256(key: bytes, prefix: str, rest: str) -> None:
    expected = hmac.digest(key, (prefix + rest).encode(), "sha256")
    assert keyed_mac(key, prefix, rest) == expected
    assert keyed_mac(key, prefix, rest) == expected  # from the kept state, a second time


def test_tokens_are_the_formats_already_in_mail() -> None:
    """Computed here from the formats' definitions with hmac.digest (what made them before)."""
    key, uid = b"k" * 32, "0123456789abcdef0123456789abcdef"
    for purpose in ("unsubscribe", PREFERENCES):
        mac = hmac.digest(key, f"digest:2:{purpose}:{uid}".encode(), "sha256")
        sig = base64.urlsafe_b64encode(mac[:16]).rstrip(b"=").decode()
        token = make_token(key, purpose, uid)
        assert token == f"{key_id(key)}_{uid}_{sig}"
        assert read_token(key, purpose, token) == uid
    for purpose in (UNSUBSCRIBE, BOUNCE):
        token = make_delivery_token(key, purpose, 7, uid)
        mac = hmac.new(key, f"digest:{purpose}:7:{uid}".encode(), hashlib.sha256).digest()
        ref = read_delivery_token(key, purpose, token)
        assert ref is not None and ref.subscriber_uid == uid and ref.issue_number == 7
        assert token.rsplit("-", 1)[1] == _b32(mac[:8])


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=").lower()
