"""T5: queuing an issue for N subscribers on SQLite: digest.issues.freeze.create_issue (and its commit)
against a raw sqlite3 INSERT … SELECT of the same delivery rows, each on its own fresh copy of
one seeded database, alternating which goes first.

Both connections use the pragmas digest's engine sets (WAL, synchronous=NORMAL, foreign keys
on), so the ratio is digest's overhead and not a difference in durability settings.
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import corpus
import seed

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=30000",
)
RAW_INSERT = (
    "INSERT INTO delivery (issue_id, subscriber_id, status, attempts, last_reply) "
    "SELECT ?, id, 'queued', 0, '' FROM subscriber WHERE status = 'active' ORDER BY id"
)


def _cleanup(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def time_create_issue(db: Path, rendered: Any) -> tuple[float, dict[str, Any], int]:
    """Seconds for create_issue + commit; the issue row (to copy to the raw database); rows."""
    import sqlalchemy as sa
    from sqlmodel import Session, select

    from digest.db import make_engine
    from digest.issues.freeze import create_issue
    from digest.issues.select import Draft
    from digest.models import NewsItem

    engine = make_engine(f"sqlite:///{db}")
    with Session(engine, expire_on_commit=False) as session:
        items = session.exec(select(NewsItem)).all()
        session.execute(sa.text("SELECT count(*) FROM subscriber")).one()  # connect, warm the pool
        draft = Draft(
            number=1,
            period_start=corpus.T0 - timedelta(days=1),
            period_end=corpus.T0 + timedelta(days=6),
            items=items,
            rendered=rendered,
        )
        start = time.perf_counter()
        issue = create_issue(session, draft)
        session.commit()
        elapsed = time.perf_counter() - start
        row = dict(
            session.execute(sa.text("SELECT * FROM issue WHERE id = :i"), {"i": issue.id})
            .mappings()
            .one()
        )
        n = session.execute(sa.text("SELECT count(*) FROM delivery")).scalar_one()
    engine.dispose()
    return elapsed, row, int(n)


def time_raw(db: Path, issue_row: dict[str, Any]) -> tuple[float, int]:
    con = sqlite3.connect(db, isolation_level=None)
    for p in PRAGMAS:
        con.execute(p)
    cols = ",".join(issue_row)
    con.execute(
        f"INSERT INTO issue ({cols}) VALUES ({','.join('?' * len(issue_row))})",  # noqa: S608
        list(issue_row.values()),
    )
    con.execute("SELECT count(*) FROM subscriber").fetchone()
    start = time.perf_counter()
    con.execute("BEGIN")
    con.execute(RAW_INSERT, (issue_row["id"],))
    con.execute("COMMIT")
    elapsed = time.perf_counter() - start
    n = con.execute("SELECT count(*) FROM delivery").fetchone()[0]
    con.close()
    return elapsed, int(n)


def run(work: Path, *, subscribers: int, repeats: int, log: Any = print) -> dict[str, Any]:
    start = time.monotonic()
    template = seed.sqlite_template(work, subscribers, items=True)
    log(f"  T5 database with {subscribers:,} subscribers ready ({time.monotonic() - start:.0f} s)")
    rendered = corpus.render()
    ours, raw, problems = [], [], []
    for i in range(repeats):
        a, b = work / "queue-digest.db", work / "queue-raw.db"
        seed.copy_db(template, a)
        seed.copy_db(template, b)
        # The raw insert needs the issue row digest made; alternate the order of the *timed*
        # parts by making the digest side on a throwaway copy first when raw goes first.
        if i % 2 == 0:
            t_ours, row, n_ours = time_create_issue(a, rendered)
            t_raw, n_raw = time_raw(b, row)
        else:
            scratch = work / "queue-scratch.db"
            seed.copy_db(template, scratch)
            _, row, _ = time_create_issue(scratch, rendered)
            _cleanup(scratch)
            t_raw, n_raw = time_raw(b, row)
            t_ours, row, n_ours = time_create_issue(a, rendered)
        if not (n_ours == n_raw == subscribers):
            problems.append(f"run {i}: digest queued {n_ours}, raw {n_raw}, expected {subscribers}")
        ours.append(t_ours)
        raw.append(t_raw)
        log(f"  T5 run {i + 1}: create_issue {t_ours:.2f} s, raw INSERT…SELECT {t_raw:.2f} s")
        _cleanup(a)
        _cleanup(b)
    m_ours, m_raw = statistics.median(ours), statistics.median(raw)
    return {
        "subscribers": subscribers,
        "create_issue_s": m_ours,
        "raw_insert_select_s": m_raw,
        "create_issue_runs_s": ours,
        "raw_runs_s": raw,
        "ratio": m_ours / m_raw,
        "ok": not problems,
        "problems": problems,
    }
