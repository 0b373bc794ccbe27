"""`digest send --scheduled` with frequencies = ["weekly", "daily"] (send/plan.py, job.py,
issues/variants.py), run every evening of one week on a fake clock: the daily issue goes to
daily subscribers each day with new items, the weekly issue to weekly subscribers on the
weekly day; each (frequency, period) is its own issue; a subscriber who switches from daily
to weekly mid-week never gets the same item twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from digest.config_load import load_settings
from digest.send.job import send_next
from digest.send.plan import period_key

from .helpers.db import rows
from .helpers.smtp import SmtpServer

MONDAY = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)  # winter: London is UTC
TITLES = {
    "Alpha": MONDAY - timedelta(hours=10),  # Monday morning
    "Bravo": MONDAY + timedelta(hours=14),  # Tuesday
    "Charlie": MONDAY + timedelta(days=2) - timedelta(hours=10),  # Wednesday
    "Delta": MONDAY + timedelta(days=3) - timedelta(hours=10),  # Thursday
}


@pytest.fixture
def week(cli, env, monkeypatch) -> None:
    monkeypatch.setenv("DIGEST_FREQUENCIES", "weekly,daily")
    for title, published in TITLES.items():
        r = cli("news", "add", "--title", f"{title} news", "--url",
                f"https://example.org/{title.lower()}", "--category", "Procedures",
                "--published", published.isoformat())  # fmt: skip
        assert r.exit_code == 0, r.output
    assert cli("subscribers", "add", "weekly@example.net").exit_code == 0
    assert cli("subscribers", "add", "daily@example.net", "--frequency", "daily").exit_code == 0
    assert cli("subscribers", "add", "switch@example.net", "--frequency", "daily").exit_code == 0


def _run(engine, now: datetime) -> list[str]:
    said: list[str] = []
    send_next(engine, load_settings().settings, scheduled=True, notify=said.append, now=now)
    return said


def _received(smtp_server: SmtpServer) -> dict[str, list[list[str]]]:
    """Per address, the titles of each message it received, in order."""
    out: dict[str, list[list[str]]] = {}
    for m in smtp_server.messages:
        text = m.message.get_body(("plain",)).get_content()
        titles = [t for t in TITLES if f"{t} news" in text]
        out.setdefault(m.rcpt_tos[0], []).append(titles)
    return out


def test_daily_and_weekly_issues_of_one_week_with_a_switch(
    cli, env, engine, week, smtp_server: SmtpServer
) -> None:
    said = _run(engine, MONDAY)  # the weekly day: both issues
    assert any("Issue 1 for 2026-W50: 1 item." in s for s in said), said
    assert any("Issue 2 for 2026-12-07: 1 item." in s for s in said), said
    _run(engine, MONDAY + timedelta(days=1))  # Tuesday: the daily issue only
    _run(engine, MONDAY + timedelta(days=2))  # Wednesday
    r = cli("subscribers", "set", "switch@example.net", "--frequency", "weekly")
    assert r.exit_code == 0, r.output
    _run(engine, MONDAY + timedelta(days=3))  # Thursday: daily to daily@ only
    said = _run(engine, MONDAY + timedelta(days=4))  # Friday: nothing new
    assert any("No new items for 2026-12-11" in s for s in said), said
    assert any("Issue 1 for 2026-W50 is already sent" in s for s in said), said
    _run(engine, MONDAY + timedelta(days=7))  # next Monday: the weekly issue
    got = _received(smtp_server)
    assert got["daily@example.net"] == [["Alpha"], ["Bravo"], ["Charlie"], ["Delta"]]
    assert got["weekly@example.net"] == [["Alpha"], ["Bravo", "Charlie", "Delta"]]
    # daily until Wednesday, then weekly: Bravo and Charlie came in daily issues already
    assert got["switch@example.net"] == [["Alpha"], ["Bravo"], ["Charlie"], ["Delta"]]
    every = [t for msg in got["switch@example.net"] for t in msg]
    assert len(every) == len(set(every))
    assert rows(env, "SELECT number, frequency, period_key FROM issue ORDER BY number") == [
        (1, "weekly", "2026-W50"), (2, "daily", "2026-12-07"), (3, "daily", "2026-12-08"),
        (4, "daily", "2026-12-09"), (5, "daily", "2026-12-10"), (6, "weekly", "2026-W51"),
    ]  # fmt: skip


def test_a_weekly_day_later_in_the_week(cli, env, engine, week, monkeypatch, smtp_server) -> None:
    monkeypatch.setenv("DIGEST_WEEKLY_DAY", "thursday")
    said = _run(engine, MONDAY)
    assert any("The weekly issue for 2026-W50 is made on Thursday or later" in s for s in said)
    assert sorted(_received(smtp_server)) == ["daily@example.net", "switch@example.net"]
    _run(engine, MONDAY + timedelta(days=3))
    assert _received(smtp_server)["weekly@example.net"] == [["Alpha", "Bravo", "Charlie", "Delta"]]


def test_period_keys_per_frequency(env) -> None:
    settings = load_settings().settings
    assert period_key(settings, MONDAY, "weekly") == "2026-W50"
    assert period_key(settings, MONDAY, "daily") == "2026-12-07"


def test_schedule_daily_without_frequencies_still_sends_to_everyone(
    cli, env, engine, monkeypatch, smtp_server: SmtpServer
) -> None:
    """A set-up from before `frequencies` (schedule = "daily"): subscribers the migration left
    weekly get the daily issue, since weekly is not offered."""
    monkeypatch.setenv("DIGEST_SCHEDULE", "daily")
    for title, published in list(TITLES.items())[:2]:
        cli("news", "add", "--title", f"{title} news", "--url", f"https://example.org/{title}",
            "--published", published.isoformat())  # fmt: skip
    cli("subscribers", "add", "old@example.net")
    with engine.begin() as c:  # as migration 0010 left everyone already on the list
        c.exec_driver_sql("UPDATE subscriber SET frequency = 'weekly'")
    said = _run(engine, MONDAY + timedelta(days=1))
    assert any("Issue 1 for 2026-12-08: 2 items." in s for s in said), said
    assert _received(smtp_server)["old@example.net"] == [["Alpha", "Bravo"]]
    assert rows(env, "SELECT frequency, period_key FROM issue") == [("daily", "2026-12-08")]
