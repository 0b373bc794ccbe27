"""Addresses at special-use domains (.local, .internal, .test, .localhost) are refused by
default, with a message naming the setting that allows them for an intranet or staging."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from digest.addresses import normalise_address
from digest.config import ConfigError
from digest.config_load import load_settings
from digest.db import make_engine
from digest.web.app import create_app

from .helpers.smtp import SmtpServer
from .helpers.web import rows

SPECIAL = ["ana@intranet.local", "bo@council.internal", "cy@staging.test", "di@host.localhost"]


@pytest.mark.parametrize("address", SPECIAL)
def test_refused_by_default_with_the_setting_named(
    cli: Callable[..., Any], env: dict[str, str], address: str
) -> None:
    r = cli("subscribers", "add", address)
    assert r.exit_code == 2
    assert "is a special-use name" in r.stderr and "allow_special_use_domains = true" in r.stderr


def test_allowed_by_the_setting_everywhere(
    cli: Callable[..., Any], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_ALLOW_SPECIAL_USE_DOMAINS", "true")
    monkeypatch.setenv("DIGEST_FROM", "Staff News <news@council.internal>")
    for address in SPECIAL[:2]:
        r = cli("subscribers", "add", address)
        assert r.exit_code == 0, r.output
    Path("list.csv").write_text("email\ncy@staging.test\nDi@Host.LOCALHOST\n", encoding="utf-8")
    r = cli("subscribers", "import", "list.csv")
    assert r.exit_code == 0, r.output
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    with TestClient(create_app(load_settings().settings, engine=engine)) as client:
        assert client.post("/subscribe", data={"email": "ed@wiki.local"}).status_code == 200
    emails = [e for (e,) in rows(engine, "SELECT email FROM subscriber ORDER BY id")]
    engine.dispose()
    assert emails == [*SPECIAL[:3], "Di@host.localhost", "ed@wiki.local"]


def test_the_from_address_follows_the_setting(workdir: Path) -> None:
    env = {"DIGEST_FROM": "News <news@council.internal>"}
    with pytest.raises(ConfigError, match=r"from: council.internal is a special-use name"):
        load_settings(environ=env)
    s = load_settings(environ={**env, "DIGEST_ALLOW_SPECIAL_USE_DOMAINS": "1"}).settings
    assert s.from_domain == "council.internal"


def test_the_rest_of_an_allowed_address_is_still_checked() -> None:
    assert normalise_address("Ana@Intranet.LOCAL", allow_special_use=True) == "Ana@intranet.local"
    for bad in ("ana..b@intranet.local", "ana@-x.local", "ana@intranet"):
        with pytest.raises(ValueError):
            normalise_address(bad, allow_special_use=True)
    assert normalise_address("ana@example.org") == "ana@example.org"


def test_a_test_copy_follows_the_setting(
    cli: Callable[..., Any],
    env: dict[str, str],
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r = cli("news", "add", "--title", "An item", "--url", "https://example.org/n/1")
    assert r.exit_code == 0, r.output
    r = cli("send", "--to", "staff@intranet.local")
    assert r.exit_code == 2 and "allow_special_use_domains = true" in r.stderr
    monkeypatch.setenv("DIGEST_ALLOW_SPECIAL_USE_DOMAINS", "true")
    r = cli("send", "--to", "staff@intranet.local")
    assert r.exit_code == 0, r.output
    assert [m.rcpt_tos for m in smtp_server.messages] == [["staff@intranet.local"]]
