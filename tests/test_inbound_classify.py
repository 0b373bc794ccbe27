"""Classifying what comes back: real DSNs of many MTAs (flufl.bounce's samples), Gmail and
Microsoft 365 DSNs, ARF complaints (RFC 5965, Yahoo, Microsoft JMRP), auto-replies, a human
reply, emailed unsubscribes, forged reports and hostile input."""

from __future__ import annotations

import os
import secrets

import pytest

from digest.inbound.classify import MAX_MESSAGE_BYTES, classify
from digest.models import InboundKind

from .helpers import reports
from .helpers.reports import KEY, Sent, sample

SENT = Sent(5, secrets.token_hex(8), secrets.token_hex(16), "amira@example.com")
REF = (5, SENT.subscriber_uid)


def _ref(found: object) -> tuple[int, str]:
    refs = found.refs  # type: ignore[attr-defined]
    assert refs, found
    return (refs[0].issue_number, refs[0].subscriber_uid)


# (sample, permanent, failed address): Postfix, Exim, Exchange, qmail, GroupWise, Yahoo,
# Gmail (simple_42), LLNL sendmail, RFC 3464 DSNs permanent and delayed, a warning.
FLUFL = [
    ("flufl_postfix_01.eml", True, "xxxxx@local.ie"),
    ("flufl_exim_01.eml", True, "userx@its.example.nl"),
    ("flufl_microsoft_01.eml", True, "userx@example.COM"),
    ("flufl_microsoft_04.eml", True, "userx@example.COM"),
    ("flufl_groupwise_02.eml", True, "userx@example.com"),
    ("flufl_qmail_01.eml", True, "userx@example.de"),
    ("flufl_qmail_03.eml", True, "userx@example.jp"),
    ("flufl_yahoo_11.eml", True, "bad_user@aol.com"),
    ("flufl_simple_42.eml", True, "david...@gmail.com"),
    ("flufl_llnl_01.eml", True, "user1@example.gov"),
    ("flufl_dsn_11.eml", True, "joem@example.com"),
    ("flufl_dsn_05.eml", False, "userx@example.cz"),
    ("flufl_simple_03.eml", False, "userx@example.za"),
]


@pytest.mark.parametrize(("name", "permanent", "address"), FLUFL)
def test_real_bounces_of_many_mtas(name: str, permanent: bool, address: str) -> None:
    found = classify(sample(name), key=KEY)
    assert found.kind == InboundKind.bounce
    assert found.permanent is permanent
    assert address in found.addresses
    assert found.refs == ()  # no token of ours: only address matching could apply


def test_the_token_wins_over_any_address_in_the_body() -> None:
    raw = reports.with_header(sample("flufl_exim_01.eml"), f"Delivered-To: {SENT.return_path}")
    found = classify(raw, key=KEY)
    assert found.kind == InboundKind.bounce and found.permanent
    assert _ref(found) == REF
    assert found.status == "5.1.1"


def test_gmail_dsn_permanent_with_status_and_diagnostic() -> None:
    found = classify(reports.gmail_dsn(SENT), key=KEY)
    assert found.kind == InboundKind.bounce and found.permanent
    assert found.status == "5.1.1"
    assert "does not exist" in found.diagnostic
    assert _ref(found) == REF
    assert found.original_ids == ((SENT.issue_uid, SENT.subscriber_uid),)


def test_office365_dsn_permanent_and_mailbox_full_temporary() -> None:
    found = classify(reports.office365_dsn(SENT), key=KEY)
    assert (found.kind, found.permanent, found.status) == (InboundKind.bounce, True, "5.1.10")
    assert _ref(found) == REF
    full = classify(reports.office365_dsn(SENT, status="4.2.2"), key=KEY)
    assert (full.kind, full.permanent, full.status) == (InboundKind.bounce, False, "4.2.2")
    delayed = classify(reports.office365_dsn(SENT, status="4.4.7", action="delayed"), key=KEY)
    assert delayed.kind == InboundKind.bounce and not delayed.permanent


@pytest.mark.parametrize("shape", ["rfc5965", "yahoo", "jmrp"])
def test_complaints_name_the_subscriber_from_the_original(shape: str) -> None:
    raw = {
        "rfc5965": reports.arf_report,
        "yahoo": reports.yahoo_arf,
        "jmrp": reports.jmrp_report,
    }[shape](SENT)
    found = classify(raw, key=KEY)
    assert found.kind == InboundKind.complaint
    assert found.feedback_type == "abuse"
    assert _ref(found) == REF  # the VERP token in the original's Return-Path
    # and the List-Unsubscribe token (after "%20" in its mailto:) is read as valid too
    assert not found.bad_token and len(found.refs) == 1
    assert found.original_ids == ((SENT.issue_uid, SENT.subscriber_uid),)


def test_a_feedback_report_that_is_not_a_complaint_is_left_for_a_person() -> None:
    found = classify(reports.arf_report(SENT, feedback_type="virus"), key=KEY)
    assert found.kind == InboundKind.person


@pytest.mark.parametrize(
    "style", ["rfc3834", "exchange", "x-autoreply", "precedence", "subject-only"]
)
def test_vacation_replies_are_never_bounces(style: str) -> None:
    found = classify(reports.vacation_reply(SENT, style), key=KEY)
    assert found.kind == InboundKind.auto_reply, found.reason


def test_a_human_reply_is_for_a_person() -> None:
    found = classify(reports.human_reply(SENT), key=KEY)
    assert found.kind == InboundKind.person
    assert not found.bad_token  # the VERP token in its To: is ours, not a forgery


def test_emailed_unsubscribe_with_its_token() -> None:
    found = classify(reports.unsubscribe_mail(SENT), key=KEY)
    assert found.kind == InboundKind.unsubscribe
    assert _ref(found) == REF


def test_forged_unsubscribe_is_left_for_a_person() -> None:
    forged = SENT.unsubscribe_token[:-3] + "aaa"
    found = classify(reports.unsubscribe_mail(SENT, token=forged), key=KEY)
    assert found.kind == InboundKind.person and found.bad_token
    # the VERP token of the same delivery is not an unsubscribe token either
    wrong_purpose = classify(reports.unsubscribe_mail(SENT, token=SENT.verp_token), key=KEY)
    assert wrong_purpose.kind == InboundKind.person


def test_forged_dsn_with_a_bad_token_names_nobody() -> None:
    found = classify(reports.forged_dsn(SENT), key=KEY)
    assert found.kind == InboundKind.bounce  # in shape
    assert found.bad_token and found.refs == () and found.original_ids == ()


def test_fingerprint_is_the_same_through_two_routes() -> None:
    raw = reports.gmail_dsn(SENT)
    a = classify(raw, key=KEY)
    b = classify(reports.with_header(raw, "Received: from imap by x; Mon, 30 Nov 2026"), key=KEY)
    c = classify(raw.replace(b"\r\n", b"\n"), key=KEY)
    assert a.fingerprint == b.fingerprint == c.fingerprint
    assert classify(reports.gmail_dsn(SENT), key=KEY).fingerprint != a.fingerprint


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        os.urandom(4096),
        b"\x00\xff" * 1000,
        reports.gmail_dsn(SENT)[:700],  # truncated in the middle of the report
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\n"
        b"Content-Type: message/delivery-status\r\n\r\nAction: failed\r\n",
    ],
    ids=["empty", "random", "binary", "truncated", "broken-mime"],
)
def test_hostile_input_never_raises(raw: bytes) -> None:
    found = classify(raw, key=KEY)
    assert found.kind in set(InboundKind)
    assert len(found.fingerprint) == 64


def test_a_30_mb_message_is_for_a_person() -> None:
    raw = b"Subject: big\r\n\r\n" + b"x" * (30 * 1024 * 1024)
    assert len(raw) > MAX_MESSAGE_BYTES
    found = classify(raw, key=KEY)
    assert found.kind == InboundKind.person and "too large" in found.reason
