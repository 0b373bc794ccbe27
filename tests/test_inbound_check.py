"""`digest check` reports the return path: VERP set up or not, DMARC alignment of the bounce
domain, plus-addressing at the mailbox, where emailed unsubscribes go, which mailbox is read."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest


def _findings(cli: Callable[..., Any]) -> dict[tuple[str, str], str]:
    r = cli("check", "--json")
    data = json.loads(r.stdout)
    return {(f["level"], f["code"]): f["message"] for f in data["findings"]}


def test_missing_bounce_address_is_a_warning(env: dict[str, str], cli: Callable[..., Any]) -> None:
    found = _findings(cli)
    assert "bounce_address is not set" in found[("warning", "return-path")]
    assert "bounces@partnership.example.org" in found[("warning", "return-path")]


def test_verp_set_up_and_aligned(
    env: dict[str, str], cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_BOUNCE_ADDRESS", "bounces@mail.partnership.example.org")
    monkeypatch.setenv("DIGEST_INBOX_URL", "imaps://bounces@imap.example.org/INBOX")
    found = _findings(cli)
    assert "bounces+TOKEN@mail.partnership.example.org" in found[("ok", "return-path")]
    assert "plus-addressing" in found[("ok", "return-path")]
    assert ("warning", "return-path") not in found
    assert "imaps://bounces@imap.example.org:993/INBOX" in found[("ok", "inbox")]
    r = cli("check")
    assert "return-path" in r.output


def test_bounce_domain_not_aligned_and_unsubscribes_elsewhere(
    env: dict[str, str], cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_BOUNCE_ADDRESS", "bounces@mailer.example.net")
    monkeypatch.setenv("DIGEST_UNSUBSCRIBE_MAILTO", "unsubscribe@partnership.example.org")
    found = _findings(cli)
    assert "for DMARC's SPF alignment" in found[("warning", "return-path")]
    assert "unsubscribe@partnership.example.org" in found[("warning", "unsubscribe-mail")]


def test_bad_bounce_address_is_a_config_error(
    env: dict[str, str], cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_BOUNCE_ADDRESS", "bounces+x@partnership.example.org")
    r = cli("check")
    assert r.exit_code == 3
    assert "bounce_address" in r.stderr and "digest adds +TOKEN itself" in r.stderr
