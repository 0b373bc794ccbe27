"""One sender at a time on a SQLite file: an OS lock next to the database's resolved file;
and, on PostgreSQL (where several runs may work at once), one run at a time on an issue's
review copy."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from digest.db import Engine, sqlite_path
from digest.errors import EXIT_TEMPFAIL, DigestError


class SendLockBusy(DigestError):
    """Another send holds the database: not an error of this run, so cron may simply retry."""

    exit_code = EXIT_TEMPFAIL


@contextmanager
def send_lock(database_url: str) -> Iterator[None]:
    """One sender at a time on a SQLite file (an OS lock next to the database).

    PostgreSQL needs no lock: workers claim rows with FOR UPDATE SKIP LOCKED.
    """
    path = sqlite_path(database_url)
    if path is None:
        yield
        return
    # The resolved file: a database reached through a symlink (or another relative path) is
    # the same database, and must be the same lock.
    path = path.resolve()
    lock_path = path.with_name(path.name + ".send-lock")
    # owner-only, like the database: it names the host and process that sends
    fh = os.fdopen(os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600), "a+")
    with contextlib.suppress(OSError):  # a lock file left by an older digest
        os.fchmod(fh.fileno(), 0o600)
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise SendLockBusy(
                f"another `digest send` ({holder}) is sending from {path}; this one is stopping",
                hint="Wait for it to finish; run `digest issues list` to watch its progress.",
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
        fh.flush()
        yield
    finally:
        fh.close()


def send_lock_held(database_url: str) -> bool:
    """Whether a `digest send` holds the lock of this SQLite database now (never on PostgreSQL).

    A shared lock tried without waiting: it fails only while a sender holds its exclusive one.
    """
    path = sqlite_path(database_url)
    if path is None:
        return False
    path = path.resolve()
    try:
        fd = os.open(path.with_name(path.name + ".send-lock"), os.O_RDONLY)
    except OSError:
        return False  # no lock file: no send ever ran here, or it is not ours to read
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing it lets go of the shared lock at once
    return False


REVIEW_LOCK_CLASS = 0x64676572  # "dger": the first key of digest's advisory locks on reviews


@contextmanager
def review_lock(engine: Engine, number: int) -> Iterator[bool]:
    """Whether this run may send the review copy of issue `number` now: on PostgreSQL, a session
    advisory lock held while it does (False: another run holds it); on SQLite the send lock
    already lets one run at a time in, so always True. A run that dies lets go with its
    connection, so the copy is never left unsent."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    with engine.connect() as conn:
        key = (REVIEW_LOCK_CLASS, number)
        got = bool(conn.execute(sa.select(sa.func.pg_try_advisory_lock(*key))).scalar())
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.execute(sa.select(sa.func.pg_advisory_unlock(*key)))
                conn.commit()
