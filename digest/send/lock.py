"""One sender at a time on a SQLite file: an OS lock next to the database's resolved file."""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from digest.db import sqlite_path
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
    fh = lock_path.open("a+")
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
