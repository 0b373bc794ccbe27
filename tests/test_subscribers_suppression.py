"""The suppression list of erased people is a keyed hash: a copy of the database without the
secret key cannot tell whether an address was erased. Legacy unkeyed rows are re-keyed by
`digest init` (migration 0008) or as their address is seen, and a rotated key still counts."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from digest.db import make_engine, upgrade
from digest.tokens import key_id

from .helpers.db import postgres_schema
from .helpers.newsletter import SECRET

KEY = SECRET.encode()
NEW_KEY = "a-brand-new-key-for-2027-ABCDEFGHIJKLMNOP"


def _unkeyed(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


def _keyed(key: bytes, email: str) -> str:
    return hmac.new(
        key, b"digest:suppression:" + _unkeyed(email).encode(), hashlib.sha256
    ).hexdigest()


def _suppressions(url: str) -> list[tuple[str, str | None]]:
    engine = make_engine(url)
    with engine.connect() as c:
        out = [tuple(r) for r in c.execute(sa.text("SELECT email_hash, key_id FROM suppression"))]
    engine.dispose()
    return out  # type: ignore[return-value]


def test_removed_address_is_kept_as_a_keyed_hash_only(
    cli: Callable[..., Any], env: dict[str, str]
) -> None:
    assert cli("subscribers", "add", "Ana@Example.org").exit_code == 0
    assert cli("subscribers", "remove", "ana@example.org", "--yes").exit_code == 0
    stored = _suppressions(env["DIGEST_DATABASE_URL"])
    assert stored == [(_keyed(KEY, "ana@example.org"), key_id(KEY))]
    # someone with the file but not the key: hashing the address finds nothing
    assert _unkeyed("ana@example.org") not in {h for h, _ in stored}
    r = cli("subscribers", "add", "ANA@example.org")
    assert r.exit_code == 2 and "was removed from the list earlier and is suppressed" in r.stderr


def _legacy_database(url: str) -> None:
    """A database at schema 0007 with one erased address, stored the old (unkeyed) way."""
    engine = make_engine(url)
    upgrade(engine, "0007")
    with engine.begin() as c:
        c.execute(
            sa.text(
                "INSERT INTO suppression (email_hash, reason, created_at) "
                "VALUES (:h, 'removed', '2026-01-01 10:00:00')"
            ),
            {"h": _unkeyed("ana@example.org")},
        )
    engine.dispose()


def _upgraded_by_init(cli: Callable[..., Any], url: str) -> None:
    _legacy_database(url)
    r = cli("--db", url, "init")
    assert r.exit_code == 0, r.output
    assert "from schema 0007 to" in r.stdout
    assert _suppressions(url) == [(_keyed(KEY, "ana@example.org"), key_id(KEY))]
    r = cli("--db", url, "subscribers", "add", "ana@example.org")
    assert r.exit_code == 2 and "suppressed" in r.stderr
    Path("again.csv").write_text("email\nana@example.org\n", encoding="utf-8")
    r = cli("--db", url, "subscribers", "import", "again.csv")
    assert r.exit_code == 1 and "suppressed" in r.stderr


def test_init_rekeys_legacy_rows_on_sqlite(cli: Callable[..., Any], env: dict[str, str]) -> None:
    _upgraded_by_init(cli, f"sqlite:///{Path('legacy.db').resolve()}")


@pytest.mark.postgres
def test_init_rekeys_legacy_rows_on_postgresql(
    cli: Callable[..., Any], env: dict[str, str]
) -> None:
    with postgres_schema() as url:
        _upgraded_by_init(cli, url)


def test_a_legacy_row_left_by_a_bare_upgrade_is_still_recognised_and_rekeyed_when_seen(
    cli: Callable[..., Any], env: dict[str, str]
) -> None:
    url = f"sqlite:///{Path('legacy.db').resolve()}"
    _legacy_database(url)
    engine = make_engine(url)
    upgrade(engine)  # no key: the rows stay unkeyed
    engine.dispose()
    assert _suppressions(url) == [(_unkeyed("ana@example.org"), None)]
    r = cli("--db", url, "subscribers", "add", "ana@example.org")
    assert r.exit_code == 2 and "suppressed" in r.stderr
    # refused in a transaction that rolled back; a successful command keeps the upgrade:
    Path("two.csv").write_text("email\nana@example.org\nbo@example.org\n", encoding="utf-8")
    r = cli("--db", url, "subscribers", "import", "two.csv")
    assert r.exit_code == 1 and "Imported 1 subscriber" in r.stdout
    assert _suppressions(url) == [(_keyed(KEY, "ana@example.org"), key_id(KEY))]


def test_a_rotated_key_still_recognises_what_it_hashed(
    cli: Callable[..., Any], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("subscribers", "add", "ana@example.org").exit_code == 0
    assert cli("subscribers", "remove", "ana@example.org", "--yes").exit_code == 0
    monkeypatch.setenv("DIGEST_SECRET_KEY", NEW_KEY)
    Path("digest.retired-keys").write_text(f"# until 2026\n{SECRET}\n", encoding="utf-8")
    os.chmod("digest.retired-keys", 0o600)
    r = cli("subscribers", "add", "ana@example.org")
    assert r.exit_code == 2 and "suppressed" in r.stderr
    Path("list.csv").write_text("email\nana@example.org\nbo@example.org\n", encoding="utf-8")
    assert cli("subscribers", "import", "list.csv").exit_code == 1
    # re-keyed with the new key as it was seen
    new = NEW_KEY.encode()
    assert _suppressions(env["DIGEST_DATABASE_URL"]) == [
        (_keyed(new, "ana@example.org"), key_id(new))
    ]
    # and without the retired key in the keyring it would not have been recognised
    Path("digest.retired-keys").unlink()
    monkeypatch.setenv("DIGEST_SECRET_KEY", "yet-another-key-0123456789-ABCDEFGHIJ")
    r = cli("subscribers", "add", "ana@example.org")
    assert r.exit_code == 0, r.output
