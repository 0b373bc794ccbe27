"""Databases for the send figures: created by the real `digest init`, then seeded fast.

News items go in through digest's own library (upsert_item), so they are stored exactly as
`digest news add` would store them. Subscribers go in with one executemany through sqlite3 or
COPY on PostgreSQL: seeding is not what is measured.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import corpus

# The columns the Subscriber model requires (digest/models.py); the others have defaults.
SUB_COLUMNS = (
    "uid",
    "email",
    "email_key",
    "name",
    "status",
    "status_source",
    "created_at",
    "status_changed_at",
)


def digest_cmd(*args: str) -> list[str]:
    return [sys.executable, "-P", "-m", "digest", *args]


def init_db(database_url: str, workdir: Path, env: dict[str, str]) -> None:
    """`digest init` in a scratch folder (it writes a starter digest.toml there)."""
    workdir.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        digest_cmd("init"), cwd=workdir, env=env, capture_output=True, text=True, timeout=120
    )
    if r.returncode != 0:
        raise RuntimeError(f"digest init failed ({r.returncode}): {r.stderr.strip()}")


def add_items(database_url: str, n: int = corpus.N_ITEMS) -> None:
    from digest.db import make_engine, session_scope
    from digest.news.items import ItemInput, upsert_item

    engine = make_engine(database_url)
    with session_scope(engine) as session:
        for d in corpus.items_for(n):
            upsert_item(
                session,
                ItemInput(
                    title=str(d["title"]),
                    url=str(d["url"]),
                    summary=str(d["summary_html"]),
                    category=str(d["category"]),
                    published=d["published_at"],
                ),  # type: ignore[arg-type]
            )
    engine.dispose()


def subscriber_rows(n: int):  # noqa: ANN201 - a generator of tuples
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    for i in range(n):
        email = f"reader{i}@example.net"
        yield (
            f"{i:08x}bench{i * 7919 % 1000003:07d}",
            email,
            email,
            f"Reader {i}",
            "active",
            "import",
            now,
            now,
        )


def _check_columns(cols: list[tuple[str, bool, bool]]) -> None:
    """Fail clearly if the schema grew a required column this seeder does not fill."""
    missing = [
        name
        for name, notnull, has_default in cols
        if notnull and not has_default and name not in SUB_COLUMNS and name != "id"
    ]
    if missing:
        raise RuntimeError(f"subscriber has new required columns {missing}: update bench/seed.py")


def add_subscribers_sqlite(path: Path, n: int) -> None:
    con = sqlite3.connect(path)
    info = con.execute("PRAGMA table_info(subscriber)").fetchall()
    _check_columns([(r[1], bool(r[3]), r[4] is not None) for r in info])
    marks = ",".join("?" * len(SUB_COLUMNS))
    with con:
        con.executemany(
            f"INSERT INTO subscriber ({','.join(SUB_COLUMNS)}) VALUES ({marks})",  # noqa: S608
            subscriber_rows(n),
        )
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def sqlite_template(
    folder: Path, subscribers: int, *, items: bool = True, n_items: int = corpus.N_ITEMS
) -> Path:
    """A ready database file with `subscribers` active subscribers (and `n_items` news items)."""
    folder.mkdir(parents=True, exist_ok=True)
    shape = f"-{n_items}items" if items and n_items != corpus.N_ITEMS else ""
    path = folder / f"template-{subscribers}{shape}{'' if items else '-noitems'}.db"
    if path.exists():
        return path
    building = path.with_name(path.name + ".building")
    for p in (building, Path(f"{building}-wal"), Path(f"{building}-shm")):
        p.unlink(missing_ok=True)
    url = f"sqlite:///{building}"
    env = corpus.digest_env(url, 25)
    init_db(url, folder / "init", {**_base_env(), **env})
    if items:
        add_items(url, n_items)
    add_subscribers_sqlite(building, subscribers)
    building.rename(path)
    return path


def copy_db(template: Path, dest: Path) -> Path:
    for suffix in ("", "-wal", "-shm", ".send-lock"):
        Path(f"{dest}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(template, dest)
    return dest


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}


def base_env() -> dict[str, str]:
    return _base_env()


def add_subscribers_postgres(url: str, n: int) -> None:
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as con, con.cursor() as cur:
        cur.execute(
            "SELECT column_name, is_nullable = 'NO', column_default IS NOT NULL "
            "FROM information_schema.columns WHERE table_name = 'subscriber' "
            "AND table_schema = current_schema()"
        )
        _check_columns([(r[0], r[1], r[2]) for r in cur.fetchall()])
        with cur.copy(f"COPY subscriber ({','.join(SUB_COLUMNS)}) FROM STDIN") as copy:
            for row in subscriber_rows(n):
                copy.write_row(row[:6] + (row[6] + "+00", row[7] + "+00"))
