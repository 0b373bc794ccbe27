"""`digest check`: a clean configuration passes; each purpose-made bad one is caught."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from digest.check import CheckReport, contrast_ratio, lint_message
from digest.compose.dkim import DkimSigner, parse_key
from digest.config import load_settings

from .helpers.keys import rsa_pem, signed_message


def _news(cli: Callable[..., Any]) -> None:
    for n, cat in enumerate(["News", "Events"]):
        r = cli("news", "add", "--title", f"Item {n}", "--url", f"https://example.org/c/{n}",
                "--category", cat, "--summary", "<p>Summary.</p>")  # fmt: skip
        assert r.exit_code == 0, r.output


def _dkim(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, domain: str = "partnership.example.org"
) -> None:
    key = workdir / "dkim.key"
    key.write_bytes(rsa_pem())
    key.chmod(0o600)
    monkeypatch.setenv("DIGEST_DKIM_DOMAIN", domain)
    monkeypatch.setenv("DIGEST_DKIM_SELECTOR", "news")
    monkeypatch.setenv("DIGEST_DKIM_PRIVATE_KEY_FILE", str(key))


def _codes(result: Any, level: str = "error") -> set[str]:
    data = json.loads(result.stdout)
    return {f["code"] for f in data["findings"] if f["level"] == level}


def test_clean_configuration_passes(
    env: dict[str, str], cli: Callable[..., Any], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _news(cli)
    _dkim(workdir, monkeypatch)
    monkeypatch.setenv("DIGEST_BOUNCE_ADDRESS", "bounces@partnership.example.org")
    r = cli("check")
    assert r.exit_code == 0, r.output
    assert "Checked issue 1, the next send (2 items)." in r.output
    assert "DKIM: rsa-sha256 with news._domainkey.partnership.example.org" in r.output
    assert 'publish: news._domainkey.partnership.example.org TXT "v=DKIM1; k=rsa; p=' in r.output
    assert (
        "ok       dkim            the DKIM signature (rsa-sha256) verifies with the configured key"
        in r.output
    )
    assert "ok       dkim-alignment" in r.output and "ok       unsubscribe" in r.output
    assert r.output.rstrip().endswith("0 errors, 0 warnings: ready to send.")
    j = cli("check", "--json")
    assert j.exit_code == 0
    data = json.loads(j.stdout)
    assert data["ok"] is True and data["errors"] == 0 and 0 < data["html_bytes"] < 102_000


def test_no_items_checks_a_sample_issue(env: dict[str, str], cli: Callable[..., Any]) -> None:
    r = cli("check")
    assert r.exit_code == 0, r.output
    assert "Checked a sample issue: there are no new items for the next send." in r.output
    assert "warning  dkim            messages are not DKIM-signed" in r.output
    assert "warning  return-path     bounce_address is not set" in r.output
    assert "0 errors, 2 warnings: ready to send." in r.output


def test_missing_postal_address_and_base_url(
    env: dict[str, str], cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _news(cli)
    monkeypatch.delenv("DIGEST_POSTAL_ADDRESS")
    monkeypatch.delenv("DIGEST_BASE_URL")
    r = cli("check")
    assert r.exit_code == 1
    assert "ERROR    postal-address  postal_address is not set" in r.output
    assert "ERROR    base-url        base_url is not set" in r.output
    assert "ERROR    unsubscribe     List-Unsubscribe has no https link" in r.output
    assert "fix the errors before sending." in r.output
    assert {"postal-address", "base-url", "unsubscribe"} <= _codes(cli("check", "--json"))


def test_dkim_domain_not_aligned_with_from(
    env: dict[str, str], cli: Callable[..., Any], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _news(cli)
    _dkim(workdir, monkeypatch, domain="mailer.example.com")
    r = cli("check")
    assert r.exit_code == 1
    assert ("ERROR    dkim-alignment  DKIM domain mailer.example.com is not aligned with the From "
            "domain partnership.example.org") in r.output  # fmt: skip


def test_dkim_key_readable_by_others(
    env: dict[str, str], cli: Callable[..., Any], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _dkim(workdir, monkeypatch)
    (workdir / "dkim.key").chmod(0o644)
    r = cli("check")
    assert r.exit_code == 1
    assert "ERROR    dkim-key        dkim_private_key_file:" in r.output
    assert "can be read by other users" in r.output


def test_signature_that_does_not_verify_is_an_error(workdir: Path) -> None:
    settings = load_settings(environ={"DIGEST_FROM": "News <news@example.org>"}).settings
    signed_by = DkimSigner("example.org", "s1", *parse_key(rsa_pem()))
    configured = DkimSigner("example.org", "s1", *parse_key(rsa_pem()))
    report = CheckReport(source="test")
    lint_message(signed_message(signed_by), settings=settings,
                 unsubscribe_url="https://news.example.org/unsubscribe/sub1.SIG", signer=configured,
                 report=report)  # fmt: skip
    errors = {(f.code, f.message) for f in report.errors}
    assert ("dkim", "the DKIM signature does not verify with the configured key") in errors


BAD_TEMPLATE = """<!DOCTYPE html>
<html>
<body>
<img src="https://example.org/a.png">
<img src="/relative.png" alt="relative">
<a href="/archive">relative link</a>
<a href="#nowhere">broken anchor</a>
<p>{% raw %}{{ name }}{% endraw %}</p>
<p>{{ "padding " * 14000 }}</p>
</body>
</html>
"""


def test_bad_template_is_caught(
    env: dict[str, str], cli: Callable[..., Any], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _news(cli)
    (workdir / "tpl" / "email").mkdir(parents=True)
    (workdir / "tpl" / "email" / "digest.html").write_text(BAD_TEMPLATE, encoding="utf-8")
    monkeypatch.setenv("DIGEST_TEMPLATES_DIR", str(workdir / "tpl"))
    r = cli("check")
    assert r.exit_code == 1
    out = r.output
    assert "ERROR    images          image without alt text: https://example.org/a.png" in out
    assert (
        "ERROR    images          image not loaded from an absolute https URL: /relative.png" in out
    )
    assert "ERROR    links           link that is not an absolute http(s) URL: /archive" in out
    assert "#nowhere (no element has that id)" in out
    assert "ERROR    placeholders    leftover template text or placeholders: '{{', '}}'" in out
    assert "ERROR    unsubscribe     the HTML part has no unsubscribe link" in out
    assert "ERROR    size            the HTML is" in out and "Gmail clips messages" in out
    assert "warning  accessibility   <html> has no lang attribute" in out


def test_broken_template_is_reported(
    env: dict[str, str], cli: Callable[..., Any], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _news(cli)
    (workdir / "tpl" / "email").mkdir(parents=True)
    (workdir / "tpl" / "email" / "digest.txt").write_text("line 1\n{{ oops }\n", encoding="utf-8")
    monkeypatch.setenv("DIGEST_TEMPLATES_DIR", str(workdir / "tpl"))
    r = cli("check")
    assert r.exit_code == 1
    assert "ERROR    render          template" in r.output and "digest.txt line 2:" in r.output


def test_low_contrast_accent_is_a_warning(
    env: dict[str, str], cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_ACCENT_COLOUR", "#ffcc00")
    r = cli("check")
    assert r.exit_code == 0
    assert (
        "warning  contrast        accent_colour #ffcc00 on white has a contrast of 1.5:1"
        in r.output
    )
    assert round(contrast_ratio("#000", "#fff"), 1) == 21.0
