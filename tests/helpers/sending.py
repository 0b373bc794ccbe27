"""Helpers of the send tests: a newsletter with subscribers and items, SQL reads, the real
CLI in a subprocess, and an issue frozen without sending it (for `send --worker`)."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from digest.db import make_engine

from .db import rows  # re-exported for the send tests: one copy, in helpers/db.py


def seed(cli: Callable[..., Any], subscribers: int = 5, items: int = 1) -> None:
    """`subscribers` active readers (reader0@example.net…) and `items` news items, by the CLI."""
    now = datetime.now(UTC)
    for i in range(subscribers):
        r = cli("subscribers", "add", f"reader{i}@example.net", "--name", f"Reader {i}")
        assert r.exit_code == 0, r.output
    add_items(cli, items, now=now)


def add_items(
    cli: Callable[..., Any], n: int, *, now: datetime | None = None, tag: str = ""
) -> None:
    now = now or datetime.now(UTC)
    for i in range(n):
        r = cli("news", "add", "--title", f"Item {tag}{i}", "--url",
                f"https://example.org/n/{tag}{i}", "--summary", f"<p>Summary {tag}{i}</p>",
                "--published", (now - timedelta(minutes=i + 1)).isoformat())  # fmt: skip
        assert r.exit_code == 0, r.output


def bulk_subscribers(database_url: str, n: int) -> None:
    """n active subscribers r0@example.net…, inserted directly (the CLI path is tested elsewhere)."""
    engine = make_engine(database_url)
    with engine.begin() as c:
        c.execute(
            sa.text(
                "INSERT INTO subscriber (uid, email, email_key, name, status, status_source, "
                "created_at, status_changed_at) VALUES (:uid, :e, :e, '', 'active', 'import', "
                ":t, :t)"
            ),
            [
                {"uid": f"{i:032x}", "e": f"r{i}@example.net", "t": "2026-11-01 00:00:00"}
                for i in range(n)
            ],
        )
    engine.dispose()


def execute(database_url: str, sql: str, **params: Any) -> None:
    engine = make_engine(database_url)
    try:
        with engine.begin() as c:
            c.execute(sa.text(sql), params)
    finally:
        engine.dispose()


def statuses(database_url: str) -> dict[str, int]:
    """Delivery status -> count, over every issue."""
    found = rows(database_url, "SELECT status, count(*) FROM delivery GROUP BY status")
    return {str(s): int(n) for s, n in found}


def sent_emails(database_url: str, issue_number: int = 1) -> list[str]:
    return [
        str(r[0])
        for r in rows(
            database_url,
            "SELECT s.email FROM delivery d JOIN subscriber s ON s.id = d.subscriber_id "
            "JOIN issue i ON i.id = d.issue_id WHERE i.number = :n AND d.status = 'sent'",
            n=issue_number,
        )
    ]


def digest(env: dict[str, str], *args: str, faketime: str | None = None) -> subprocess.Popen[bytes]:
    """`digest ARGS…` in a subprocess with `env` over this process's environment.

    `faketime` ("+120s"): its wall clock skewed by that much with Debian's libfaketime,
    preloaded directly (the `faketime` wrapper forks, so killing it would leave the child).
    The monotonic clock stays true: timed waits (threading, queue) take absolute monotonic
    deadlines, and a faked one would make every wait that much longer; a skewed machine's
    wall clock is what the test is about."""
    cmd = [sys.executable, "-m", "digest", *args]
    extra: dict[str, str] = {}
    if faketime:
        extra = {
            "LD_PRELOAD": faketime_library(),
            "FAKETIME": faketime,
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }
    return subprocess.Popen(
        cmd, env={**os.environ, **env, **extra}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def faketime_library() -> str:
    """The path of libfaketime (Debian: apt-get install faketime); '' when it is missing."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    return found[0] if found else ""


def finish(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int | None, str, str]:
    """Wait up to `timeout` seconds; a process still running then is killed and reported with
    returncode None (the test then fails on it, instead of hanging)."""
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out.decode(), err.decode()
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return None, out.decode(), err.decode()


def freeze_issue(database_url: str, environ: dict[str, str]) -> int:
    """Freeze the next issue with its deliveries, without sending any (the workers send)."""
    from digest.config_load import load_settings
    from digest.db import session_scope
    from digest.send.plan import plan_send, start_issue

    settings = load_settings(environ={**os.environ, **environ}).settings
    engine = make_engine(database_url)
    try:
        with session_scope(engine) as session:
            plan = plan_send(session, settings)
            assert plan is not None
            return start_issue(session, plan).number
    finally:
        engine.dispose()


def copies(rcpts: Iterable[str]) -> Counter[str]:
    return Counter(rcpts)


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()
