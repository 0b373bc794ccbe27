"""Acting on what comes back, on SQLite and PostgreSQL: Mailman's bounce score (hard, soft, one
a day, reset after a quiet month, threshold -> bounced with a consent-log entry), complaints and
emailed unsubscribes at once, each message exactly once, forged reports change nothing, a 5xx
recorded during sending counts, and a failure half-way changes nothing at all."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from digest.config import Settings
from digest.db import make_engine, session_scope, upgrade
from digest.errors import UsageError
from digest.inbound.act import (
    issue_feedback_counts,
    list_events,
    process_message,
    reactivate_subscriber,
    record_smtp_failures,
)
from digest.models import InboundKind

from .helpers import reports
from .helpers.db import postgres_schema
from .helpers.newsletter import FROM, SECRET
from .helpers.web import rows

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'inbound.db'}"
        eng = make_engine(url)
        upgrade(eng)
        yield eng
        eng.dispose()
    else:
        with postgres_schema() as url:
            eng = make_engine(url)
            upgrade(eng)
            yield eng
            eng.dispose()


def _settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {"from": FROM, "secret_key": SECRET, "timezone": "UTC"}
    base.setdefault("bounce_address", reports.BOUNCE_ADDRESS)
    base.update(kw)
    return Settings.model_validate(base)


def _status(engine: Engine, email: str) -> tuple[str, float]:
    [(status, score)] = rows(
        engine, "SELECT status, bounce_score FROM subscriber WHERE email = :e", e=email
    )
    return status, score


def _log(engine: Engine, email: str) -> list[tuple[str, str, str]]:
    return rows(
        engine,
        "SELECT e.status, e.source, e.detail FROM subscriber_event e JOIN subscriber s "
        "ON s.id = e.subscriber_id WHERE s.email = :e ORDER BY e.id",
        e=email,
    )


def test_one_permanent_bounce_makes_a_subscriber_bounced_with_the_reason(engine: Engine) -> None:
    [ana, bo] = reports.make_world(engine, ["ana@example.com", "bo@example.com"])
    out = process_message(engine, _settings(), reports.gmail_dsn(ana), now=T0)
    assert (out.kind, out.permanent, out.email, out.changed) == (
        InboundKind.bounce, True, "ana@example.com", True
    )  # fmt: skip
    assert _status(engine, "ana@example.com") == ("bounced", 1.0)
    assert _status(engine, "bo@example.com") == ("active", 0.0)
    status, source, detail = _log(engine, "ana@example.com")[-1]
    assert (status, source) == ("bounced", "bounce")
    assert "5.1.1" in detail and "does not exist" in detail
    with session_scope(engine) as s:
        [event] = list_events(s)
        assert (event.kind, event.status, event.score_after, event.counted) == (
            "permanent", "5.1.1", 1.0, True
        )  # fmt: skip
        assert issue_feedback_counts(s, event.issue_id or 0) == {"permanent": 1}


def test_soft_bounces_add_up_one_a_day(engine: Engine) -> None:
    [ana] = reports.make_world(engine, ["ana@example.com"])
    settings = _settings()
    full = lambda: reports.office365_dsn(ana, status="4.2.2")  # noqa: E731
    for day in range(3):
        for _ in range(2):  # a second report the same day does not count
            process_message(engine, settings, full(), now=T0 + timedelta(days=day, hours=_))
    assert _status(engine, "ana@example.com") == ("active", 0.75)
    process_message(engine, settings, full(), now=T0 + timedelta(days=3))
    assert _status(engine, "ana@example.com") == ("bounced", 1.0)
    counted = rows(engine, "SELECT counted FROM bounce_event ORDER BY id")
    assert [bool(c) for (c,) in counted] == [True, False, True, False, True, False, True]


def test_a_permanent_bounce_after_a_soft_one_the_same_day_still_counts(engine: Engine) -> None:
    [ana] = reports.make_world(engine, ["ana@example.com"])
    settings = _settings()
    process_message(engine, settings, reports.office365_dsn(ana, status="4.2.2"), now=T0)
    process_message(engine, settings, reports.gmail_dsn(ana), now=T0 + timedelta(hours=1))
    assert _status(engine, "ana@example.com") == ("bounced", 1.0)


def test_the_score_goes_back_to_zero_after_a_quiet_month(engine: Engine) -> None:
    [ana] = reports.make_world(engine, ["ana@example.com"])
    settings = _settings(bounce_threshold=1.0, bounce_reset_days=30)
    soft = lambda: reports.office365_dsn(ana, status="4.2.2")  # noqa: E731
    for day in (0, 1, 2):
        process_message(engine, settings, soft(), now=T0 + timedelta(days=day))
    assert _status(engine, "ana@example.com") == ("active", 0.75)
    process_message(engine, settings, soft(), now=T0 + timedelta(days=33))
    assert _status(engine, "ana@example.com") == ("active", 0.25)


def test_score_settings_are_used(engine: Engine) -> None:
    [ana] = reports.make_world(engine, ["ana@example.com"])
    settings = _settings(bounce_hard_score=0.5, bounce_threshold=1.0)
    process_message(engine, settings, reports.gmail_dsn(ana), now=T0)
    assert _status(engine, "ana@example.com") == ("active", 0.5)
    process_message(engine, settings, reports.gmail_dsn(ana), now=T0 + timedelta(days=1))
    assert _status(engine, "ana@example.com") == ("bounced", 1.0)


@pytest.mark.parametrize("shape", ["rfc5965", "yahoo", "jmrp"])
def test_a_complaint_unsubscribes_at_once(engine: Engine, shape: str) -> None:
    [ana] = reports.make_world(engine, ["ana@example.com"])
    make = {"rfc5965": reports.arf_report, "yahoo": reports.yahoo_arf, "jmrp": reports.jmrp_report}
    out = process_message(engine, _settings(), make[shape](ana), now=T0)
    assert (out.kind, out.changed) == (InboundKind.complaint, True)
    assert _status(engine, "ana@example.com")[0] == "unsubscribed"
    assert _log(engine, "ana@example.com")[-1][:2] == ("unsubscribed", "complaint")
    with session_scope(engine) as s:
        [event] = list_events(s)
        assert issue_feedback_counts(s, event.issue_id or 0) == {"complaint": 1}


def test_an_emailed_unsubscribe_acts_at_once_and_a_forged_one_does_nothing(engine: Engine) -> None:
    [ana, bo] = reports.make_world(engine, ["ana@example.com", "bo@example.com"])
    forged = bo.unsubscribe_token[:-2] + ("aa" if not bo.unsubscribe_token.endswith("aa") else "bb")
    out = process_message(engine, _settings(), reports.unsubscribe_mail(bo, token=forged), now=T0)
    assert out.kind == InboundKind.person
    assert _status(engine, "bo@example.com")[0] == "active"
    out = process_message(engine, _settings(), reports.unsubscribe_mail(ana), now=T0)
    assert (out.kind, out.changed) == (InboundKind.unsubscribe, True)
    assert _log(engine, "ana@example.com")[-1][:2] == ("unsubscribed", "email")


@pytest.mark.parametrize("bounce_address", [reports.BOUNCE_ADDRESS, None])
def test_a_forged_dsn_bounces_nobody(engine: Engine, bounce_address: str | None) -> None:
    [ana] = reports.make_world(engine, ["ana@example.com"])
    settings = _settings(bounce_address=bounce_address)
    out = process_message(engine, settings, reports.forged_dsn(ana), now=T0)
    assert out.kind == InboundKind.person and "not valid" in out.detail
    assert _status(engine, "ana@example.com") == ("active", 0.0)
    assert rows(engine, "SELECT COUNT(*) FROM bounce_event") == [(0,)]


def test_without_bounce_address_the_failed_address_is_matched(engine: Engine) -> None:
    reports.make_world(engine, ["userx@its.example.nl"])
    raw = reports.sample("flufl_exim_01.eml")
    out = process_message(engine, _settings(bounce_address=None), raw, now=T0)
    assert (out.kind, out.email, out.changed) == (InboundKind.bounce, "userx@its.example.nl", True)
    # with bounce_address set, a report without a token of ours is left for a person
    reports.make_world(engine, ["xxxxx@local.ie"], issue_number=2)
    raw = reports.sample("flufl_postfix_01.eml")
    out = process_message(engine, _settings(), raw, now=T0)
    assert out.kind == InboundKind.person
    assert _status(engine, "xxxxx@local.ie")[0] == "active"


def test_each_message_is_processed_once_whatever_the_route(engine: Engine) -> None:
    [ana] = reports.make_world(engine, ["ana@example.com"])
    settings = _settings(bounce_hard_score=0.25)
    raw = reports.gmail_dsn(ana)
    first = process_message(engine, settings, raw, now=T0)
    again = process_message(engine, settings, raw, now=T0 + timedelta(days=2))
    other_route = reports.with_header(raw, "Received: from mx2 by imap; Mon, 30 Nov 2026")
    third = process_message(engine, settings, other_route, now=T0 + timedelta(days=3))
    assert not first.already_seen and again.already_seen and third.already_seen
    assert again.kind == InboundKind.bounce
    assert _status(engine, "ana@example.com") == ("active", 0.25)
    assert rows(engine, "SELECT COUNT(*) FROM inbound_message") == [(1,)]


def test_a_5xx_recorded_during_sending_counts_once(engine: Engine) -> None:
    [ana, bo] = reports.make_world(engine, ["ana@example.com", "bo@example.com"])
    now = datetime.now(UTC)
    with engine.begin() as c:
        c.execute(
            sa.text(
                "UPDATE delivery SET status = 'failed', last_reply = :r WHERE subscriber_id = "
                "(SELECT id FROM subscriber WHERE email = 'ana@example.com')"
            ),
            {"r": "550 5.1.1 <ana@example.com>: Recipient address rejected"},
        )
        c.execute(
            sa.text(
                "UPDATE delivery SET status = 'failed', last_reply = '451 4.3.0 try later' "
                "WHERE subscriber_id = (SELECT id FROM subscriber WHERE email = 'bo@example.com')"
            )
        )
    settings = _settings()
    assert record_smtp_failures(engine, settings, now=now) == 1
    assert record_smtp_failures(engine, settings, now=now) == 0
    assert _status(engine, "ana@example.com") == ("bounced", 1.0)
    assert _status(engine, "bo@example.com") == ("active", 0.0)
    [(kind, status, origin)] = rows(engine, "SELECT kind, status, origin FROM bounce_event")
    assert (kind, status) == ("permanent", "5.1.1") and origin.startswith("smtp:")


def test_a_failure_half_way_changes_nothing(engine: Engine) -> None:
    [ana] = reports.make_world(engine, ["ana@example.com"])
    if engine.dialect.name == "sqlite":
        trigger = [
            "CREATE TRIGGER fail_events BEFORE INSERT ON bounce_event "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        ]
    else:
        trigger = [
            "CREATE FUNCTION fail_events() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER fail_events BEFORE INSERT ON bounce_event "
            "FOR EACH ROW EXECUTE FUNCTION fail_events()",
        ]
    with engine.begin() as c:
        for sql in trigger:
            c.execute(sa.text(sql))
    with pytest.raises(sa.exc.DatabaseError):
        process_message(engine, _settings(), reports.gmail_dsn(ana), now=T0)
    assert _status(engine, "ana@example.com") == ("active", 0.0)
    assert rows(engine, "SELECT COUNT(*) FROM inbound_message") == [(0,)]
    assert len(_log(engine, "ana@example.com")) == 0


def test_staff_reactivate_a_bounced_subscriber_but_not_an_unsubscribed_one(engine: Engine) -> None:
    [ana, bo] = reports.make_world(engine, ["ana@example.com", "bo@example.com"])
    process_message(engine, _settings(), reports.gmail_dsn(ana), now=T0)
    process_message(engine, _settings(), reports.unsubscribe_mail(bo), now=T0)
    with session_scope(engine) as s:
        reactivate_subscriber(s, "ana@example.com")
    assert _status(engine, "ana@example.com") == ("active", 0.0)
    with session_scope(engine) as s, pytest.raises(UsageError):
        reactivate_subscriber(s, "bo@example.com")
    assert _status(engine, "bo@example.com")[0] == "unsubscribed"


def test_tokens_signed_with_a_retired_key_still_act_after_a_key_change(
    engine: Engine, tmp_path: Any
) -> None:
    # Digests already in inboxes carry tokens made with the old key; after `secret_key` changes
    # (the old one kept in retired_keys_file) their emailed unsubscribes and bounces must still
    # count, while a token from a key we never had still does nothing.
    [ana, bo, cy] = reports.make_world(
        engine, ["ana@example.com", "bo@example.com", "cy@example.com"]
    )
    retired = tmp_path / "retired-keys"
    retired.write_text(f"# the key before 2026-12-01\n{SECRET}\n")
    retired.chmod(0o600)
    rotated = _settings(secret_key="N3w-k3y-" + "x7Q9" * 8, retired_keys_file=str(retired))
    out = process_message(engine, rotated, reports.unsubscribe_mail(ana), now=T0)
    assert (out.kind, out.changed) == (InboundKind.unsubscribe, True)
    out = process_message(engine, rotated, reports.gmail_dsn(bo), now=T0)
    assert out.kind == InboundKind.bounce
    assert _status(engine, "bo@example.com")[0] == "bounced"
    without_retired = _settings(secret_key="N3w-k3y-" + "x7Q9" * 8)
    out = process_message(engine, without_retired, reports.unsubscribe_mail(cy), now=T0)
    assert out.kind == InboundKind.person
    assert _status(engine, "cy@example.com")[0] == "active"
