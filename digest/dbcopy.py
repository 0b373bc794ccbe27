"""`digest db copy`: move a whole database — subscribers with their consent log, suppression
entries, news, sources, issues with their deliveries, inbound reports — to another database,
e.g. from the SQLite file to PostgreSQL when the list grows past one machine.

The source must be at the current schema (`digest init` upgrades it); the target is created
or upgraded, and must hold no rows yet, so a copy never mixes two lists. Every table is copied
in one transaction on the target, in foreign-key order, with its ids, so that links, tokens and
Message-IDs stay valid; PostgreSQL's id sequences are then moved past the copied ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import SQLModel

import digest.models  # noqa: F401  (every table in SQLModel.metadata)
from digest.config import normalise_database_url
from digest.db import check_schema, make_engine, upgrade
from digest.errors import DatabaseError, UsageError

BATCH = 1000


@dataclass(frozen=True)
class CopyReport:
    source: str
    target: str
    rows: dict[str, int]  # table -> rows copied


def _url(value: str, what: str) -> str:
    try:
        return normalise_database_url(value)
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}") from None


def copy_database(source: str, target: str) -> CopyReport:
    """Copy every row of `source` into the empty database `target` (both URLs or paths)."""
    src_url, dst_url = _url(source, "SOURCE"), _url(target, "TARGET")
    if src_url == dst_url:
        raise UsageError("SOURCE and TARGET are the same database")
    src, dst = make_engine(src_url), make_engine(dst_url)
    try:
        check_schema(src, src_url)
        upgrade(dst)
        tables = SQLModel.metadata.sorted_tables
        with dst.connect() as conn:
            busy = [
                t.name
                for t in tables
                if conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
            ]
        if busy:
            raise DatabaseError(
                f"the target database already holds rows (in {', '.join(busy)}); "
                "a copy goes only into an empty one",
                hint="Create a new, empty database for TARGET (e.g. createdb digest).",
            )
        counts: dict[str, int] = {}
        with src.connect() as read, dst.begin() as write:
            for table in tables:
                n = 0
                result = read.execution_options(stream_results=True).execute(sa.select(table))
                for chunk in result.mappings().partitions(BATCH):
                    write.execute(sa.insert(table), [dict(row) for row in chunk])
                    n += len(chunk)
                counts[table.name] = n
            if dst.dialect.name == "postgresql":
                for table in tables:
                    if "id" in table.c and isinstance(table.c.id.type, sa.Integer):
                        write.execute(
                            sa.text(
                                f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "  # noqa: S608
                                f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"
                            )
                        )
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(
            f"the copy failed and nothing was written to the target: {exc.orig}",
            hint="Check both database URLs; the target must be reachable and writable.",
        ) from None
    finally:
        src.dispose()
        dst.dispose()
    return CopyReport(_shown(src_url), _shown(dst_url), counts)


def _shown(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)
