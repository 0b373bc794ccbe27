"""The secret key: a minimum strength, a warning when DIGEST_SECRET_KEY and the key file both
exist and differ (saying which one signs), and links that name their key, so a link made with
a rotated-out key is recognised and, for unsubscribing, still honoured."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from digest.config import ConfigError
from digest.config_load import load_settings
from digest.db import make_engine
from digest.models import utcnow
from digest.tokens import key_id, make_timed_token, make_token
from digest.web.app import create_app

from .helpers.newsletter import SECRET
from .helpers.web import live_server, rows

OLD = SECRET
NEW = "the-key-of-2027-0123456789-ABCDEFGHIJKLMN"


def _owner_only(path: str, text: str) -> None:
    Path(path).write_text(text, encoding="utf-8")
    os.chmod(path, 0o600)


@pytest.mark.parametrize("weak", ["abc", "x" * 40, "short-but-varied-key-1234"])
def test_a_weak_key_is_refused_with_a_way_out(
    cli: Callable[..., Any], env: dict[str, str], monkeypatch: pytest.MonkeyPatch, weak: str
) -> None:
    assert (
        cli("news", "add", "--title", "An item", "--url", "https://example.org/n/1").exit_code == 0
    )
    assert cli("subscribers", "add", "bo@example.org").exit_code == 0
    monkeypatch.setenv("DIGEST_SECRET_KEY", weak)
    for args in (("send", "--yes"), ("subscribers", "add", "ana@example.org"), ("init",)):
        r = cli(*args)
        assert r.exit_code == 3, (args, r.output)
        assert "Error: the secret key from DIGEST_SECRET_KEY is too weak" in r.stderr
        assert "openssl rand -base64 32" in r.stderr
        assert "Traceback" not in r.output
    with pytest.raises(ConfigError, match="too weak"):
        create_app(load_settings().settings)


def test_a_weak_key_file_is_refused(cli: Callable[..., Any], env: dict[str, str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.delenv("DIGEST_SECRET_KEY")
    _owner_only("digest.key", "abc\n")
    r = cli("subscribers", "add", "ana@example.org")
    assert r.exit_code == 3 and "the secret key from digest.key is too weak" in r.stderr


def test_config_show_and_check_warn_when_the_variable_and_the_file_differ(
    cli: Callable[..., Any], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _owner_only("digest.key", NEW + "\n")
    r = cli("config", "show")
    assert r.exit_code == 0, r.output
    assert (
        f"Warning: DIGEST_SECRET_KEY and digest.key are both set and differ: DIGEST_SECRET_KEY "
        f"signs (key id {key_id(OLD.encode())}), digest.key (key id {key_id(NEW.encode())}) is "
        "not used." in r.stderr
    )
    assert f"key id {key_id(OLD.encode())} from DIGEST_SECRET_KEY" in r.stdout
    assert OLD not in r.output and NEW not in r.output
    r = cli("check", "--json")
    assert '"code": "secret-key"' in r.stdout and "DIGEST_SECRET_KEY signs" in r.stdout
    # the same key in both places, or only one of them: no warning
    _owner_only("digest.key", OLD + "\n")
    r = cli("config", "show")
    assert r.exit_code == 0 and "Warning" not in r.stderr
    monkeypatch.delenv("DIGEST_SECRET_KEY")
    r = cli("config", "show")
    assert (
        "Warning" not in r.stderr and f"key id {key_id(OLD.encode())} from digest.key" in r.stdout
    )


def _first_format(key: bytes, uid: str) -> str:
    """An unsubscribe token as digest made them before key ids (mail already sent has them)."""
    mac = hmac.new(key, f"digest:unsubscribe:{uid}".encode(), hashlib.sha256).digest()[:16]
    return f"{uid}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def test_links_signed_with_a_retired_key_still_unsubscribe_but_never_confirm(
    cli: Callable[..., Any],
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for email in ("ana@example.org", "bo@example.org", "cy@example.org"):
        assert cli("subscribers", "add", email).exit_code == 0
    assert cli("subscribers", "add", "pat@example.org", "--status", "pending").exit_code == 0
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    uid = dict(rows(engine, "SELECT email, uid FROM subscriber"))
    old = OLD.encode()
    links = {
        "new format, old key": f"/unsubscribe/{make_token(old, 'unsubscribe', uid['ana@example.org'])}",
        "first format, old key": f"/unsubscribe/{_first_format(old, uid['bo@example.org'])}",
    }  # fmt: skip
    stranger = f"/unsubscribe/{make_token(b'some-key-nobody-has-0123456789ABC', 'unsubscribe', uid['cy@example.org'])}"
    confirm = f"/confirm/{make_timed_token(old, 'confirm', uid['pat@example.org'], now=utcnow())}"
    # the key is rotated: a new one signs, the old one is retired
    monkeypatch.setenv("DIGEST_SECRET_KEY", NEW)
    _owner_only("digest.retired-keys", f"# retired 2026-12-01\n{OLD}\n")
    app = create_app(load_settings().settings, engine=engine)
    caplog.set_level(logging.INFO, logger="digest.lifecycle")
    with live_server(app) as url, httpx.Client(base_url=url) as http:
        for label, path in links.items():
            assert http.get(path).status_code == 200, label  # the page with the button
            r = http.post(path, data={"List-Unsubscribe": "One-Click"})
            assert r.status_code == 200 and "You are unsubscribed" in r.text, label
        r = http.post(stranger, data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 404 and "This link does not work" in r.text
        assert http.post(confirm).status_code == 404  # confirming widens consent: current key only
        new_link = make_token(NEW.encode(), "unsubscribe", uid["cy@example.org"])
        assert http.post(f"/unsubscribe/{new_link}").status_code == 200
    status = dict(rows(engine, "SELECT email, status FROM subscriber"))
    assert status == {"ana@example.org": "unsubscribed", "bo@example.org": "unsubscribed",
                      "cy@example.org": "unsubscribed", "pat@example.org": "pending"}  # fmt: skip
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "signed with key id " + key_id(b"some-key-nobody-has-0123456789ABC") in m
        and "which this server does not have" in m
        for m in messages
    ), messages
    assert any(f"retired key {key_id(old)} was honoured" in m for m in messages)
    assert any(f"retired key {key_id(old)} was refused" in m for m in messages)
    engine.dispose()


def test_new_links_name_the_signing_key() -> None:
    token = make_token(NEW.encode(), "unsubscribe", "0123456789abcdef0123456789abcdef")
    kid, uid, _sig = token.split("_", 2)
    assert kid == key_id(NEW.encode()) and uid == "0123456789abcdef0123456789abcdef"
