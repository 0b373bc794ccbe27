"""Real DSNs from a real MTA: a private Postfix accepts our mail, its pipe transport fails,
and it returns a DSN to the VERP envelope sender; those DSNs are read back and acted on."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest

from digest.inbound.classify import classify
from digest.models import InboundKind

from .helpers.postfix import Postfix, start_postfix
from .helpers.reports import KEY, Sent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def postfix() -> Iterator[Postfix]:
    with start_postfix() as server:
        yield server


def _send(postfix: Postfix, sent: Sent) -> None:
    body = sent.original_headers(return_path=False) + "\r\nHello.\r\n"
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as smtp:
        smtp.sendmail(sent.return_path, [sent.email], body.encode())


def test_postfix_dsns_are_permanent_or_temporary_and_name_the_delivery(postfix: Postfix) -> None:
    before = len(list((postfix.maildir / "new").glob("*"))) if postfix.maildir.exists() else 0
    gone = Sent(3, "0123456789abcdef", "a" * 32, "gone@dead.example")
    full = Sent(3, "0123456789abcdef", "b" * 32, "full@dead.example")
    _send(postfix, gone)
    _send(postfix, full)
    paths = postfix.wait_for_mail(before + 2)[before:]
    found = {}
    for path in paths:
        raw = path.read_bytes()
        assert b"Postfix" in raw and b"multipart/report" in raw  # a real Postfix DSN
        c = classify(raw, key=KEY)
        found[c.refs[0].subscriber_uid] = c
    permanent, temporary = found["a" * 32], found["b" * 32]
    assert permanent.kind == temporary.kind == InboundKind.bounce
    assert (permanent.permanent, permanent.status) == (True, "5.1.1")
    assert "no such person" in permanent.diagnostic
    assert temporary.permanent is False and temporary.status.startswith("4.")
    assert permanent.refs[0].issue_number == 3
    assert permanent.original_ids == (("0123456789abcdef", "a" * 32),)
