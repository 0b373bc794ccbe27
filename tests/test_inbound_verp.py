"""Delivery tokens (VERP and the emailed unsubscribe): bound to the key, the purpose, the issue
and the subscriber; short and safe in a local part, a URL and through lowercasing MTAs."""

from __future__ import annotations

import re
import secrets

import pytest

from digest.inbound import verp

KEY = b"test-secret-key-0123456789"


def _uid() -> str:
    return secrets.token_hex(16)


def test_round_trip_names_the_delivery() -> None:
    uid = _uid()
    token = verp.make_delivery_token(KEY, verp.BOUNCE, 42, uid)
    assert verp.read_delivery_token(KEY, verp.BOUNCE, token) == verp.DeliveryRef(42, uid)


def test_token_is_short_lowercase_and_local_part_safe() -> None:
    for number in (1, 999, 36**4 - 1):
        token = verp.make_delivery_token(KEY, verp.BOUNCE, number, _uid())
        assert len(token) <= verp.MAX_TOKEN_LEN
        assert re.fullmatch(r"[0-9a-z-]+", token), token
        address = verp.verp_address("bounces@Partnership.Example.org", token)
        local = address.split("@")[0]
        assert len(local) <= 64 and address.endswith("@partnership.example.org")


def test_an_mta_that_uppercases_or_lowercases_does_not_break_it() -> None:
    uid = _uid()
    token = verp.make_delivery_token(KEY, verp.BOUNCE, 7, uid)
    assert verp.read_delivery_token(KEY, verp.BOUNCE, token.upper()) == verp.DeliveryRef(7, uid)


def test_tampered_foreign_or_other_purpose_tokens_are_refused() -> None:
    uid = _uid()
    token = verp.make_delivery_token(KEY, verp.BOUNCE, 3, uid)
    other_issue = "4" + token[1:]
    flipped = token[:-1] + ("a" if token[-1] != "a" else "b")
    assert verp.read_delivery_token(KEY, verp.BOUNCE, other_issue) is None
    assert verp.read_delivery_token(KEY, verp.BOUNCE, flipped) is None
    assert verp.read_delivery_token(b"another key", verp.BOUNCE, token) is None
    # a bounce address's token does not unsubscribe anyone
    assert verp.read_delivery_token(KEY, verp.UNSUBSCRIBE, token) is None
    for junk in ("", "x", "1-abc-def", token + "-", "é" * 40):
        assert verp.read_delivery_token(KEY, verp.BOUNCE, junk) is None


def test_tokens_are_found_in_addresses_and_subjects() -> None:
    token = verp.make_delivery_token(KEY, verp.UNSUBSCRIBE, 12, _uid())
    assert verp.tokens_in_text(f"unsubscribe {token}") == [token]
    assert verp.tokens_in_text(f"<bounces+{token.upper()}@example.org>") == [token.upper()]
    assert verp.tokens_in_text("no token here, 1-2-3") == []
    assert verp.tokens_in_text(f"mailto:b@example.org?subject=unsubscribe%20{token}") == [token]


def test_bad_token_inputs_raise_value_error() -> None:
    with pytest.raises(ValueError):
        verp.make_delivery_token(KEY, verp.BOUNCE, 1, "not-hex")
    with pytest.raises(ValueError):
        verp.make_delivery_token(KEY, verp.BOUNCE, 36**4, _uid())


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("bounces@example.org", True),
        ("Bounces <bounces@Example.ORG>", True),
        ("bounces+x@example.org", False),
        ("a-very-long-local-part@example.org", False),
        ("nobody", False),
    ],
)
def test_bounce_address_must_leave_room_for_a_token(value: str, ok: bool) -> None:
    if ok:
        assert verp.check_bounce_address(value).endswith("@example.org")
    else:
        with pytest.raises(ValueError):
            verp.check_bounce_address(value)


def _settings(**kw: object) -> object:
    from digest.config import Settings

    base = {"from": "News <news@partnership.example.org>", "secret_key": KEY.decode()}
    return Settings.model_validate({**base, **kw})


def test_each_delivery_gets_its_envelope_sender_and_mailto_token() -> None:
    from digest.compose.recipients import Recipients

    uid = _uid()
    settings = _settings(bounce_address="bounces@partnership.example.org")
    recipients = Recipients.of(settings, issue_uid="0123456789abcdef", key=KEY, issue_number=7)  # type: ignore[arg-type]
    r = recipients.subscriber(uid, "ana@example.com", "Ana")
    local, _, domain = r.envelope_from.partition("@")
    assert domain == "partnership.example.org" and local.startswith("bounces+")
    assert verp.read_delivery_token(KEY, verp.BOUNCE, local[8:]) == verp.DeliveryRef(7, uid)
    assert r.mailto_unsubscribe.startswith(
        "mailto:bounces@partnership.example.org?subject=unsubscribe%20"
    )
    [token] = verp.tokens_in_text(r.mailto_unsubscribe)
    assert verp.read_delivery_token(KEY, verp.UNSUBSCRIBE, token) == verp.DeliveryRef(7, uid)
    # a test copy, a dry run or a preview carries no delivery token and no VERP sender
    copy = recipients.test_copy("me@example.org")
    assert copy.envelope_from == "news@partnership.example.org" and copy.mailto_unsubscribe == ""
    draft = Recipients.of(settings, issue_uid="dryrun", key=KEY).subscriber(uid, "a@x.org", "")  # type: ignore[arg-type]
    assert draft.envelope_from == "news@partnership.example.org" and draft.mailto_unsubscribe == ""


def test_without_bounce_address_the_envelope_sender_stays_the_from_address() -> None:
    from digest.compose.recipients import Recipients

    settings = _settings()
    r = Recipients.of(settings, issue_uid="0123456789abcdef", key=KEY, issue_number=2).subscriber(  # type: ignore[arg-type]
        _uid(), "ana@example.com", ""
    )
    assert r.envelope_from == "news@partnership.example.org"
    assert r.mailto_unsubscribe.startswith(
        "mailto:news@partnership.example.org?subject=unsubscribe%20"
    )
