"""International domain names in the settings become their ASCII (xn--) form at validation, so
the message can always be composed: a send with IDN settings goes out instead of stopping
with "SMTP unavailable" forever (issue #10). Real parts: the CLI, SQLite, the aiosmtpd server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from digest.config_load import load_settings

from .helpers.smtp import SmtpServer


def test_idn_base_url_and_from_are_stored_as_punycode() -> None:
    s = load_settings(
        environ={
            "DIGEST_BASE_URL": "https://nyheter.bücher.example/ärchiv/",
            "DIGEST_FROM": "Bücher <news@bücher.example>",
            "DIGEST_UNSUBSCRIBE_MAILTO": "abmelden@bücher.example",
        }
    ).settings
    assert s.base_url == "https://nyheter.xn--bcher-kva.example/%C3%A4rchiv"
    assert s.from_address == "Bücher <news@xn--bcher-kva.example>"
    assert s.from_domain == "xn--bcher-kva.example"
    assert s.unsubscribe_mailto == "abmelden@xn--bcher-kva.example"


def test_a_send_with_idn_settings_goes_out(
    env: dict[str, str], cli: Callable[..., Any], smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("DIGEST_BASE_URL", "https://nyheter.bücher.example")
    monkeypatch.setenv("DIGEST_FROM", "Bücher-Nachrichten <news@bücher.example>")
    assert cli("subscribers", "add", "ana@example.net").exit_code == 0
    r = cli("news", "add", "--title", "Neu", "--url", "https://example.org/neu")
    assert r.exit_code == 0, r.output
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    (received,) = smtp_server.messages
    assert received.mail_from == "news@xn--bcher-kva.example"
    msg = received.message
    assert msg["List-Unsubscribe"].startswith("<https://nyheter.xn--bcher-kva.example/unsubscribe/")
    assert "@xn--bcher-kva.example>" in msg["Message-ID"]
