"""`digest send --scheduled` (the cron/systemd job; send/plan.py): one issue per period in the
newsletter's time zone, resuming or dropping an unfinished issue, and `--worker`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from digest.config import Settings
from digest.db import make_engine
from digest.demo import free_port
from digest.send.plan import period_key

from .helpers.db import rows
from .helpers.seed import seed
from .helpers.smtp import SmtpServer


def _sql(env: dict[str, str], sql: str) -> None:
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    with engine.begin() as c:
        c.execute(sa.text(sql))
    engine.dispose()


@pytest.mark.parametrize(
    ("schedule", "moment", "key"),
    [
        ("weekly", datetime(2026, 11, 28, 12, 0, tzinfo=UTC), "2026-W48"),
        # Sunday 23:30 UTC in summer is Monday 00:30 in London: next ISO week
        ("weekly", datetime(2026, 6, 28, 23, 30, tzinfo=UTC), "2026-W27"),
        ("weekly", datetime(2027, 1, 1, 9, 0, tzinfo=UTC), "2026-W53"),
        ("daily", datetime(2026, 11, 28, 23, 59, tzinfo=UTC), "2026-11-28"),
    ],
)
def test_period_key_in_the_newsletter_time_zone(schedule: str, moment: datetime, key: str) -> None:
    settings = Settings.model_validate({"schedule": schedule, "timezone": "Europe/London"})
    assert settings.tz == ZoneInfo("Europe/London")
    assert period_key(settings, moment) == key


def test_scheduled_sends_once_per_period(cli, env, smtp_server: SmtpServer, monkeypatch) -> None:
    seed(cli, subscribers=3, items=2)
    r = cli("send", "--scheduled")
    assert r.exit_code == 0, r.output
    assert "Issue 1 for 20" in r.stdout and "Issue 1 is complete." in r.stdout
    assert len(smtp_server.messages) == 3
    (key,) = rows(env, "SELECT period_key FROM issue")[0]
    assert key and "-W" in key
    # Same period again, even with new items: nothing, and no SMTP connection is opened.
    cli("news", "add", "--title", "Late item", "--url", "https://example.org/late")
    monkeypatch.setenv("DIGEST_SMTP_URL", f"smtp://127.0.0.1:{free_port()}")
    r = cli("send", "--scheduled")
    assert r.exit_code == 0, r.output
    assert f"Issue 1 for {key} is already sent; nothing to do." in r.stdout
    assert rows(env, "SELECT count(*) FROM issue") == [(1,)]


def test_scheduled_with_no_new_items_sends_nothing(cli, env, smtp_server: SmtpServer) -> None:
    cli("subscribers", "add", "a@example.net")
    r = cli("send", "--scheduled")
    assert r.exit_code == 0
    assert "No new items for 20" in r.stdout and "nothing to send" in r.stdout
    assert rows(env, "SELECT count(*) FROM issue") == [(0,)]
    assert smtp_server.messages == []


def test_scheduled_resumes_an_unfinished_issue(cli, env, smtp_server: SmtpServer) -> None:
    seed(cli, subscribers=4, items=1)
    smtp_server.reply = lambda rcpt, data: (
        "451 4.3.0 later" if rcpt == "reader2@example.net" else None
    )
    r = cli("send", "--scheduled")
    assert r.exit_code == 75, r.output
    smtp_server.reply = None
    _sql(
        env, "UPDATE delivery SET next_attempt_at = '2000-01-01 00:00:00' WHERE status = 'deferred'"
    )
    r = cli("send", "--scheduled")
    assert r.exit_code == 0, r.output
    assert "only its deferred deliveries are left" in r.stdout
    assert "Retrying the deferred deliveries of issue 1" in r.stdout
    assert sorted(smtp_server.by_rcpt()) == [f"reader{i}@example.net" for i in range(4)]
    assert all(len(v) == 1 for v in smtp_server.by_rcpt().values())


def test_stale_unfinished_issue_is_not_sent_late_without_force(
    cli, env, smtp_server: SmtpServer
) -> None:
    seed(cli, subscribers=3, items=1)
    smtp_server.reply = lambda rcpt, data: "451 4.3.0 later"
    assert cli("send", "--scheduled").exit_code == 75
    smtp_server.reply = None
    # the issue was made two days ago (we move its clock rather than wait)
    _sql(env, "UPDATE issue SET created_at = '2000-01-01 00:00:00'")
    _sql(env, "UPDATE delivery SET next_attempt_at = NULL")
    before = len(smtp_server.messages)
    r = cli("send", "--scheduled")
    assert r.exit_code == 1
    assert "issue 1 is unfinished and was made" in r.stderr and "not sending it late" in r.stderr
    assert "--force" in r.stderr and "digest issues cancel 1" in r.stderr
    assert len(smtp_server.messages) == before
    r = cli("send", "--scheduled", "--force")
    assert r.exit_code == 0, r.output
    assert len(smtp_server.by_rcpt()) == 3


def test_incompatible_options(cli, env) -> None:
    r = cli("send", "--scheduled", "--worker")
    assert r.exit_code == 2 and "cannot be combined" in r.stderr
    r = cli("send", "--force")
    assert r.exit_code == 2 and "--force only applies to --scheduled" in r.stderr


def test_worker_without_an_issue_does_nothing(cli, env, smtp_server: SmtpServer) -> None:
    r = cli("send", "--worker")
    assert r.exit_code == 0
    assert "No issue is being sent; nothing for a worker to do." in r.stdout


def _scheduled(env: dict[str, str], now: datetime, force: bool = False):
    from digest.config_load import load_settings
    from digest.db import session_scope
    from digest.send.plan import plan_scheduled

    settings = load_settings().settings
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    try:
        with session_scope(engine) as session:
            return plan_scheduled(session, settings, now=now, force=force)
    finally:
        engine.dispose()


def test_a_stale_issue_of_last_week_is_dropped_not_sent_and_does_not_block(
    cli, env, smtp_server: SmtpServer
) -> None:
    seed(cli, subscribers=3, items=1)
    smtp_server.reply = lambda rcpt, data: "451 4.3.0 later"
    assert cli("send", "--scheduled").exit_code == 75
    smtp_server.reply = None
    (key,) = rows(env, "SELECT period_key FROM issue")[0]
    # eight days later (the clock is the only thing faked)
    later = datetime.now(UTC) + timedelta(days=8)
    cli("news", "add", "--title", "Next week", "--url", "https://example.org/next",
        "--published", (later - timedelta(hours=1)).isoformat())  # fmt: skip
    decision = _scheduled(env, later)
    assert "Issue 1 was still unfinished" in decision.message
    assert "its 3 remaining deliveries were dropped, not sent late." in decision.message
    assert decision.plan is not None and decision.plan.draft is not None
    assert decision.key != key
    assert rows(env, "SELECT status FROM issue") == [("cancelled",)]
    assert rows(env, "SELECT DISTINCT last_reply FROM delivery") == [("stale: not sent late",)]


def test_an_issue_sent_by_hand_this_week_counts_as_the_weeks_issue(
    cli, env, smtp_server: SmtpServer
) -> None:
    seed(cli, subscribers=2, items=1)
    assert cli("send", "--yes").exit_code == 0
    cli("news", "add", "--title", "Another", "--url", "https://example.org/another")
    r = cli("send", "--scheduled")
    assert r.exit_code == 0, r.output
    assert "Issue 1 for 20" in r.stdout and "is already sent; nothing to do." in r.stdout
    assert rows(env, "SELECT count(*) FROM issue") == [(1,)]
    # next week the scheduled job sends the new item
    decision = _scheduled(env, datetime.now(UTC) + timedelta(days=7))
    assert decision.plan is not None and decision.plan.draft is not None
    assert [i.title for i in decision.plan.draft.items] == ["Another"]
