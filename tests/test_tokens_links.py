"""The tokens behind the public links (tokens.py): unsubscribe links of the first format keep
working; timed confirm tokens expire and are bound to their purpose and key."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from digest.tokens import make_timed_token, make_token, read_timed_token, read_token

from .helpers.newsletter import SECRET

KEY = SECRET.encode()


NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def test_unsubscribe_tokens_of_the_first_format_still_work() -> None:
    """Links in mail already sent must keep working: uid '.' base64url(HMAC-SHA256[:16])."""
    uid = "0123456789abcdef0123456789abcdef"
    mac = hmac.new(KEY, f"digest:unsubscribe:{uid}".encode(), hashlib.sha256).digest()[:16]
    first_format = f"{uid}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert read_token(KEY, "unsubscribe", first_format) == uid
    assert make_token(KEY, "unsubscribe", uid) != first_format  # new links carry a key id


def test_timed_tokens_expire_and_are_bound_to_purpose_and_key() -> None:
    uid = "0123456789abcdef0123456789abcdef"
    token = make_timed_token(KEY, "confirm", uid, now=NOW)
    week = timedelta(days=7)
    assert read_timed_token(KEY, "confirm", token, max_age=week, now=NOW) == (uid, NOW)
    assert read_timed_token(KEY, "confirm", token, max_age=week, now=NOW + week)
    assert (
        read_timed_token(KEY, "confirm", token, max_age=week, now=NOW + week + timedelta(seconds=1))
        is None
    )
    assert (
        read_timed_token(KEY, "confirm", token, max_age=week, now=NOW - timedelta(hours=1)) is None
    )
    assert read_timed_token(KEY, "unsubscribe", token, max_age=week, now=NOW) is None
    assert read_timed_token(b"another key", "confirm", token, max_age=week, now=NOW) is None
    assert read_token(KEY, "unsubscribe", token) is None
    assert (
        read_timed_token(KEY, "confirm", make_token(KEY, "confirm", uid), max_age=week, now=NOW)
        is None
    )
    kid, uid_part, stamp, sig = token.split("_", 3)
    pre = f"{kid}_{uid_part}"
    for bad in (f"{pre}_{stamp}_{sig[:-1]}", f"{pre}_{stamp}", f"{pre}_ZZ_{sig}",
                f"{pre}_{stamp}x_{sig}", "", "___", token + "_" * 200):  # fmt: skip
        assert read_timed_token(KEY, "confirm", bad, max_age=week, now=NOW) is None
