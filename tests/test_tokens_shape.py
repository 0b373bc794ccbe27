"""Tokens have a shape no content filter mistakes for anything: SpamAssassin's __BITCOIN_ID
(behind PDS_BTC_ID) matched the 32 hex characters of the old tokens one time in sixty. The rule
is copied here from Debian's spamassassin (72_active.cf); the real SpamAssassin check across
many recipients' messages is tests/test_spamassassin.py."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

from digest.tokens import (
    Keyring,
    check_timed_token,
    check_token,
    key_id,
    make_timed_token,
    make_token,
)

BITCOIN_ID = re.compile(
    r"\b(?<!=)(?:[13](?:(?:[-_=\s][a-km-zA-HJ-NP-Z1-9]){29,34}|[a-km-zA-HJ-NP-Z1-9]{29,34})"
    r"|bc1[acdefghjklmnpqrstuvwxyz234567890]{30,90}"
    r"|b[-_=\s]c[-_=\s]1(?:[-_=\s][acdefghjklmnpqrstuvwxyz234567890]){30,90})\b"
)
KEY = b"shape-test-key-0123456789-ABCDEFGHIJKLMNOP"
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _first_format(uid: str) -> str:
    from digest.tokens import _sign_v1

    return f"{uid}.{_sign_v1(KEY, 'unsubscribe', uid)}"


def _line(token: str) -> str:
    return f"Unsubscribe: https://news.example.org/unsubscribe/{token}\n"


def test_no_token_looks_like_a_bitcoin_address() -> None:
    uids = [secrets.token_hex(16) for _ in range(3000)]
    old = sum(bool(BITCOIN_ID.search(_line(_first_format(u)))) for u in uids)
    assert old > 10  # the rule is real: the old shape tripped it (about 1 in 60)
    for uid in uids:
        for token in (make_token(KEY, "unsubscribe", uid),
                      make_timed_token(KEY, "confirm", uid, now=NOW)):  # fmt: skip
            assert not BITCOIN_ID.search(_line(token)), token
    # the worst case on purpose: a uid that is all base58 and starts with 1
    worst = "1" + "abcdef123456789" * 2 + "9"
    assert BITCOIN_ID.search(_line(_first_format(worst)))
    assert not BITCOIN_ID.search(_line(make_token(KEY, "unsubscribe", worst)))


def test_old_and_new_tokens_are_both_read_with_the_key_they_name() -> None:
    retired = b"retired-key-0123456789-ABCDEFGHIJKLMNOPQ"
    ring = Keyring(KEY, (retired,))
    uid = secrets.token_hex(16)
    assert check_token(ring, "unsubscribe", make_token(KEY, "unsubscribe", uid)).uid == uid
    via_retired = check_token(ring, "unsubscribe", make_token(retired, "unsubscribe", uid))
    assert via_retired.uid == uid and via_retired.retired and via_retired.key_id == key_id(retired)
    refused = check_token(
        ring, "unsubscribe", make_token(retired, "unsubscribe", uid), retired_ok=False
    )
    assert refused.uid is None and refused.retired
    unknown = check_token(ring, "unsubscribe", make_token(b"x" * 40, "unsubscribe", uid))
    assert unknown.uid is None and unknown.unknown_key and unknown.key_id == key_id(b"x" * 40)
    assert check_token(ring, "unsubscribe", _first_format(uid)).uid == uid
    # a timed token: current key only by default
    timed = make_timed_token(retired, "confirm", uid, now=NOW)
    week = timedelta(days=7)
    assert check_timed_token(ring, "confirm", timed, max_age=week, now=NOW)[0].uid is None
    ok, issued = check_timed_token(
        ring, "confirm", make_timed_token(KEY, "confirm", uid, now=NOW), max_age=week, now=NOW
    )
    assert ok.uid == uid and issued == NOW
