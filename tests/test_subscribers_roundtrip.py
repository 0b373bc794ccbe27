"""Moving the list (`subscribers export` then `subscribers import` into a fresh database) keeps
everyone's consent as it was: status, where it came from, its times and the name."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from digest.config_load import load_settings
from digest.db import make_engine, session_scope, upgrade
from digest.export import BOM, write_csv
from digest.models import Subscriber, SubscriberStatus
from digest.subscribers import (
    add_subscriber,
    get_subscriber,
    import_subscribers,
    list_subscribers,
    set_status,
)

from .helpers.db import postgres_schema

COLUMNS = (
    "email, name, status, status_source, created_at, status_changed_at, confirmed_at, topics, "
    "frequency"
)
NAMES = {
    "ana@example.org": '=HYPERLINK("http://evil.example","click")',
    "bo@example.org": "+44 1234 567890",
    "cy@example.org": "'quoted' Cy",
    "di@example.org": "Di Evans",
    "ed@example.org": "@Ed",
    "-fay@example.org": "Fay",
}


@pytest.fixture
def source(env: dict[str, str]) -> Iterator[Engine]:
    """A list with every status, set the ways they are set for real (web, one-click, bounce)."""
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    keyring = load_settings().settings.keyring()
    with session_scope(engine) as session:
        subs = {
            email: add_subscriber(session, email=email, name=name, keyring=keyring,
                                  status=SubscriberStatus.pending, source="web")
            for email, name in NAMES.items()
        }  # fmt: skip
        set_status(session, subs["ana@example.org"], SubscriberStatus.active, source="web")
        set_status(session, subs["bo@example.org"], SubscriberStatus.active, source="web")
        set_status(session, subs["bo@example.org"], SubscriberStatus.unsubscribed,
                   source="one-click")  # fmt: skip
        set_status(session, subs["cy@example.org"], SubscriberStatus.active, source="cli")
        set_status(session, subs["cy@example.org"], SubscriberStatus.bounced, source="smtp")
        set_status(session, subs["ed@example.org"], SubscriberStatus.active, source="import")
        set_status(session, subs["-fay@example.org"], SubscriberStatus.active, source="web")
        set_status(session, subs["-fay@example.org"], SubscriberStatus.unsubscribed, source="web")
        # di stays pending
    # distinct times, to the microsecond, so a round trip that dropped or mixed them shows
    with engine.begin() as c:
        for n, email in enumerate(NAMES):
            base = datetime(2025, 3, 1 + n, 9, 15, 30, 123456 + n, tzinfo=UTC)
            c.execute(
                sa.update(Subscriber.__table__)  # type: ignore[attr-defined]
                .where(sa.column("email") == email)
                .values(created_at=base, status_changed_at=base + timedelta(days=40))
            )  # fmt: skip
    yield engine
    engine.dispose()


def _people(engine: Engine) -> list[tuple[Any, ...]]:
    with Session(engine) as session:
        return [
            (s.email, s.name, s.status, s.status_source, s.created_at, s.status_changed_at,
             s.confirmed_at)
            for s in list_subscribers(session)
        ]  # fmt: skip


def _fresh(url: str) -> Engine:
    engine = make_engine(url)
    upgrade(engine)
    return engine


def _round_trip(cli: Callable[..., Any], source: Engine, target_url: str, workdir: Path) -> None:
    r = cli("subscribers", "export", "list.csv")
    assert r.exit_code == 0, r.output
    assert r.stdout == "Exported 6 subscribers to list.csv.\n"
    target = _fresh(target_url)
    try:
        r = cli("--db", target_url, "subscribers", "import", "list.csv")
        assert r.exit_code == 0, r.output
        assert r.stdout.startswith("Imported 6 subscribers; skipped 0 already on the list")
        assert _people(target) == _people(source)
        with Session(target) as session:
            statuses = {s.email: s.status for s in list_subscribers(session)}
        assert statuses == {
            "ana@example.org": "active", "bo@example.org": "unsubscribed",
            "cy@example.org": "bounced", "di@example.org": "pending",
            "ed@example.org": "active", "-fay@example.org": "unsubscribed",
        }  # fmt: skip
        # the consent log of the new database says where the rows came from
        with target.connect() as c:
            details = dict(
                c.execute(sa.text(
                    "SELECT s.email, e.detail FROM subscriber_event e "
                    "JOIN subscriber s ON s.id = e.subscriber_id"
                )).all()
            )  # fmt: skip
        assert details["bo@example.org"].startswith(
            "imported from list.csv: unsubscribed since 2025-04-11T09:15:30.123457+00:00 (one-click)"
        )
    finally:
        target.dispose()


def test_export_import_round_trip_into_a_fresh_sqlite(
    cli: Callable[..., Any], source: Engine, workdir: Path
) -> None:
    _round_trip(cli, source, f"sqlite:///{workdir / 'new.db'}", workdir)


@pytest.mark.postgres
def test_export_import_round_trip_into_postgresql(
    cli: Callable[..., Any], source: Engine, workdir: Path
) -> None:
    with postgres_schema() as url:
        _round_trip(cli, source, url, workdir)


def test_export_keeps_the_consent_columns_and_escapes_formulas(
    cli: Callable[..., Any], source: Engine, workdir: Path
) -> None:
    assert cli("subscribers", "export", "list.csv").exit_code == 0
    rows = list(csv.DictReader(io.StringIO((workdir / "list.csv").read_text(encoding="utf-8"))))
    assert list(rows[0]) == [c.strip() for c in COLUMNS.split(",")]
    by_email = {r["email"]: r for r in rows}
    assert by_email["'-fay@example.org"]["name"] == "Fay"  # the address is escaped too
    assert by_email["ana@example.org"]["name"] == "'" + NAMES["ana@example.org"]
    assert by_email["cy@example.org"]["name"] == "''quoted' Cy"  # so the import can undo it
    assert by_email["bo@example.org"]["status_source"] == "one-click"


def test_an_unsubscribe_is_never_overridden_by_status(
    cli: Callable[..., Any], source: Engine, workdir: Path
) -> None:
    """`--status active` (or pending) sets the rows that are active or pending; unsubscribed
    and bounced rows stay so."""
    assert cli("subscribers", "export", "list.csv").exit_code == 0
    for status in ("active", "pending"):
        url = f"sqlite:///{workdir / f'{status}.db'}"
        target = _fresh(url)
        r = cli("--db", url, "subscribers", "import", "list.csv", "--status", status)
        assert r.exit_code == 0, r.output
        with Session(target) as session:
            got = {s.email: (s.status, s.status_source) for s in list_subscribers(session)}
        target.dispose()
        assert got["bo@example.org"] == ("unsubscribed", "one-click")
        assert got["cy@example.org"] == ("bounced", "smtp")
        assert got["-fay@example.org"] == ("unsubscribed", "web")
        assert got["ana@example.org"][0] == status
        assert got["di@example.org"][0] == status


def test_reactivate_is_explicit_and_needs_a_status(
    env: dict[str, str], source: Engine, workdir: Path
) -> None:
    keyring = load_settings().settings.keyring()
    with Session(source) as session:
        path = workdir / "list.csv"
        with path.open("w", encoding="utf-8", newline="") as fh:
            write_csv(list_subscribers(session), fh)
    target = _fresh(f"sqlite:///{workdir / 'new.db'}")
    from digest.errors import UsageError

    with session_scope(target) as session, pytest.raises(UsageError, match="needs --status"):
        import_subscribers(session, path, keyring=keyring, reactivate=True)
    with session_scope(target) as session:
        report = import_subscribers(
            session, path, keyring=keyring, status=SubscriberStatus.pending, reactivate=True
        )
        assert report.added == 6
        assert get_subscriber(session, "bo@example.org").status == "pending"
        assert get_subscriber(session, "bo@example.org").status_source == "import"
    target.dispose()


def test_an_unsubscribe_in_the_file_reaches_someone_already_on_the_list(
    cli: Callable[..., Any], env: dict[str, str], workdir: Path
) -> None:
    """Merging an old server's export: their later unsubscribe wins over our older active."""
    assert cli("subscribers", "add", "ana@example.org").exit_code == 0
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    earlier = "2020-01-01T00:00:00+00:00"
    Path("old.csv").write_text(
        "email,status,status_changed_at\n"
        f"ana@example.org,unsubscribed,{later}\n"
        f"bo@example.org,unsubscribed,{earlier}\n",
        encoding="utf-8",
    )
    assert cli("subscribers", "add", "bo@example.org").exit_code == 0
    r = cli("subscribers", "import", "old.csv")
    assert r.exit_code == 0, r.output
    assert "line 2: ana@example.org is now unsubscribed, as in the file" in r.stdout
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    with Session(engine) as session:
        assert get_subscriber(session, "ana@example.org").status == "unsubscribed"
        assert get_subscriber(session, "bo@example.org").status == "active"  # older: ignored
    engine.dispose()


def test_excel_export_has_a_bom_and_imports_back(
    env: dict[str, str], source: Engine, workdir: Path
) -> None:
    keyring = load_settings().settings.keyring()
    out = io.StringIO()
    with Session(source) as session:
        assert write_csv(list_subscribers(session), out, excel=True) == 6
    data = out.getvalue()
    assert data.startswith(BOM + "email,name,status")
    assert "\r\n" in data  # Excel's own line ends
    path = workdir / "excel.csv"
    path.write_bytes(data.encode("utf-8"))
    assert path.read_bytes().startswith(b"\xef\xbb\xbfemail")
    target = _fresh(f"sqlite:///{workdir / 'new.db'}")
    with session_scope(target) as session:
        assert import_subscribers(session, path, keyring=keyring).added == 6
    assert _people(target) == _people(source)
    target.dispose()


def test_bad_consent_columns_are_reported_per_row(
    cli: Callable[..., Any], env: dict[str, str], workdir: Path
) -> None:
    Path("bad.csv").write_text(
        "email,status,confirmed_at\n"
        "ana@example.org,subscribed,\n"
        "bo@example.org,active,yesterday\n"
        "cy@example.org,Active,2026-01-01T10:00:00\n",
        encoding="utf-8",
    )
    r = cli("subscribers", "import", "bad.csv")
    assert r.exit_code == 1
    assert "line 2: ana@example.org: unknown status 'subscribed'" in r.stderr
    assert "line 3: bo@example.org: confirmed_at 'yesterday' is not a date and time" in r.stderr
    assert r.stdout.startswith("Imported 1 subscriber;")


def test_the_cli_flags_excel_and_reactivate(
    cli: Callable[..., Any], source: Engine, workdir: Path
) -> None:
    r = cli("subscribers", "export", "excel.csv", "--format", "excel")
    assert r.exit_code == 0, r.output
    data = (workdir / "excel.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbfemail,name,status") and b"\r\n" in data
    r = cli("subscribers", "export", "-", "--format", "excel")
    assert r.stdout.startswith(BOM + "email,name,status")
    url = f"sqlite:///{workdir / 'new.db'}"
    target = _fresh(url)
    r = cli("--db", url, "subscribers", "import", "excel.csv", "--reactivate")
    assert r.exit_code == 2 and "Error: --reactivate needs --status" in r.stderr
    r = cli("--db", url, "subscribers", "import", "excel.csv", "--status", "pending",
            "--reactivate")  # fmt: skip
    assert r.exit_code == 0, r.output
    with Session(target) as session:
        statuses = {s.email: s.status for s in list_subscribers(session)}
    target.dispose()
    assert set(statuses.values()) == {"pending"}  # everyone asked again, nobody made active
