"""Engines, sessions and schema migrations. The database is a URL: SQLite or PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine as Engine  # re-exported: cli/ and web/ import no SQL library
from sqlalchemy.engine import make_url
from sqlmodel import Session as Session  # re-exported, as Engine

from digest.errors import DatabaseError, DigestError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`. SQLite gets WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = sa.create_engine(url, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return sa.create_engine(url, pool_pre_ping=True, **kwargs)
    except ModuleNotFoundError as exc:
        raise DatabaseError(
            f"the database driver for {parsed.drivername} is not installed ({exc.name})",
            hint="Install it with: pip install 'digest[postgres]'",
        ) from None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session committed on success and rolled back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def count_by(session: Session, column: Any, *where: Any) -> dict[str, int]:
    """How many rows have each value of `column` (rows matching `where`), in one GROUP BY."""
    query = sa.select(column, sa.func.count()).where(*where).group_by(column)
    return {str(value): int(n) for value, n in session.execute(query).all()}


OWNER_ONLY = 0o600


def owner_only(path: Path) -> None:
    """Make the SQLite file `path` (created here if missing) and its -wal/-shm files readable
    by their owner only: they hold personal data. SQLite gives the -wal and -shm files it
    creates the mode of the database file, so this holds for them from then on."""
    if not path.exists() and path.parent.is_dir():
        with contextlib.suppress(FileExistsError):  # made by another process meanwhile
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY))
    for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            st = f.stat()
            if st.st_mode & 0o077 and st.st_uid == os.geteuid():
                os.chmod(f, st.st_mode & 0o700)
        except OSError:
            continue  # not there, or not ours: SQLite reports what matters


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _alembic_config(
    connection: sa.Connection | None = None, secret_key: bytes | None = None
) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    cfg.attributes["secret_key"] = secret_key  # data migrations that re-key (0008)
    return cfg


_REVISION = re.compile(r'^(down_revision|revision) = (None|"([^"]+)")$', re.M)


def head_revision() -> str:
    """The newest migration, read from the migration files themselves.

    Every command checks the schema; importing Alembic's script machinery for that would
    cost more than many commands. A test checks this agrees with Alembic.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        for kind, _, value in _REVISION.findall(path.read_text(encoding="utf-8")):
            if value:
                (revisions if kind == "revision" else parents).add(value)
    heads = revisions - parents
    if len(heads) != 1:
        raise DatabaseError(f"the migrations have {len(heads)} heads: {sorted(heads)}")
    return heads.pop()


def alembic_head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision (None when it has no digest schema)."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(
    engine: Engine, revision: str = "head", *, secret_key: bytes | None = None
) -> tuple[str | None, str]:
    """Create or upgrade the schema in place. Returns (revision before, revision after).

    `secret_key` lets data migrations re-key what needs the key (0008: suppression entries).
    """
    from alembic import command

    path = sqlite_path(str(engine.url))
    if path is not None:
        owner_only(path)
    before = current_revision(engine)
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a table by copying it; with foreign keys on, dropping the old copy
            # would cascade to the rows that point at it (deliveries!). Off while migrating,
            # checked afterwards.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            with conn.begin():
                command.upgrade(_alembic_config(conn, secret_key), revision)
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise DatabaseError(f"the upgrade would break {len(broken)} references")
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()
    return before, current_revision(engine) or ""


def _can_create_in(folder: Path) -> bool:
    probe = folder / f".digest-write-test-{os.getpid()}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY))
    except OSError:
        return False
    probe.unlink()
    return True


def _can_write(path: Path) -> bool:
    try:
        os.close(os.open(path, os.O_WRONLY))
    except OSError:
        return False
    return True


def _is_driver_error(exc: BaseException) -> bool:
    import sqlite3

    if isinstance(exc, sqlite3.Error):
        return True
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(exc, psycopg.Error)


def explain_database_error(exc: BaseException, url: str | None) -> DigestError | None:
    """A clear error for what the database driver reported, or None if it is not one we
    know: a full disk, a read-only file or folder, a file that is not a database."""
    if isinstance(exc, sa.exc.DBAPIError):
        text = str(exc.orig)
    elif _is_driver_error(exc):  # raised by a raw driver connection (the send loop's store)
        text = str(exc)
    else:
        return None
    lowered = text.lower()
    path = sqlite_path(url) if url else None
    where = str(path) if path else "the database"
    if "database or disk is full" in lowered or "no space left" in lowered:
        return DatabaseError(
            f"the disk holding {where} is full ({text}): what was being recorded was not",
            hint="Free some space (`df -h` shows where), then run the command again. A send "
            "resumes where it stopped: what is recorded as sent is never sent again, and at "
            "most the messages in flight go twice, with the same Message-ID.",
        )
    if path is not None and any(
        s in lowered for s in ("readonly database", "unable to open database", "read-only")
    ):
        from digest.secret_files import current_user

        user = current_user()
        folder = path.parent if str(path.parent) else Path(".")
        if path.exists() and not _can_write(path):
            return DatabaseError(
                f"the database {path} is read-only for the user {user}",
                hint=f"Run digest as the user that owns it, or `chown {user} {path}` "
                f"(and `chmod 600 {path}`).",
            )
        if not _can_create_in(folder):
            return DatabaseError(
                f"the folder {folder.resolve()} is read-only for the user {user}: SQLite needs "
                f"to create {path.name}-wal and {path.name}-shm next to the database "
                "(write-ahead logging), even to read it",
                hint=f"Make the folder writable by {user} (`chown {user} {folder.resolve()}`), "
                "or move the database to a folder that is.",
            )
    if "file is not a database" in lowered or "file is encrypted" in lowered:
        return DatabaseError(
            f"{where} is not a SQLite database ({text})",
            hint="Check DIGEST_DATABASE_URL / --db: it names some other file. Give a new path "
            "and run `digest init` to make a database there.",
        )
    return None


def check_schema(engine: Engine, url: str) -> None:
    """Raise a clear error unless the database exists and is at the current schema."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        if not path.is_absolute():  # run from another folder (an MTA's pipe, a cron line)?
            raise DatabaseError(
                f"no database at {path} in {Path.cwd()} (a relative path starts from the "
                "folder digest runs in)",
                hint="Run digest from the folder of its database and digest.toml (`cd` first), "
                f"or give database_url as an absolute path (sqlite:////srv/digest/{path.name}); "
                "`digest init` creates a new one.",
            )
        raise DatabaseError(
            f"no database at {path}",
            hint="Run `digest init` to create it (or pass --db / set DIGEST_DATABASE_URL).",
        )
    try:
        current = current_revision(engine)
    except sa.exc.DBAPIError as exc:
        known = explain_database_error(exc, url)
        if known is not None:
            raise known from None
        raise DatabaseError(
            f"cannot open the database {make_url(url).render_as_string(hide_password=True)}: "
            f"{exc.orig}",
            hint="Check DIGEST_DATABASE_URL / --db.",
        ) from None
    if current is None:
        raise DatabaseError(
            "the database has no digest schema", hint="Run `digest init` to create it."
        )
    if current != head_revision():
        raise DatabaseError(
            f"the database schema is at revision {current}, this digest needs {head_revision()}",
            hint="Run `digest init` to upgrade it in place (subscribers and deliveries are kept).",
        )
