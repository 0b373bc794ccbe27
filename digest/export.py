"""Exporting subscribers to CSV: every column `subscribers import` reads back (a lossless
round trip of status, status source and times), spreadsheet-safe (formula-like cells are
escaped), and with a byte-order mark for Excel when asked."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO

from sqlmodel import Session

from digest.config import Settings
from digest.errors import DigestError
from digest.models import Subscriber, SubscriberStatus
from digest.subscribers import FORMULA_START, IMPORT_COLUMNS, list_subscribers
from digest.topics import topics_text


def _csv_safe(value: str) -> str:
    return "'" + value if value[:1] in (*FORMULA_START, "'") else value


def _time(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


def subscriber_rows(
    subs: Iterable[Subscriber], topics: Mapping[int, str] | None = None
) -> Iterable[list[str]]:
    """`topics`: each subscriber's topics as digest.topics.topics_text writes them."""
    topics = topics or {}
    for s in subs:
        yield [s.email, s.name, s.status, s.status_source, _time(s.created_at),
               _time(s.status_changed_at), _time(s.confirmed_at), topics.get(s.id or 0, ""),
               s.frequency]  # fmt: skip


EXPORT_HEADER = list(IMPORT_COLUMNS)


BOM = "\ufeff"  # Excel reads a CSV as UTF-8 only when it starts with one


def write_csv(
    subs: Iterable[Subscriber],
    out: IO[str],
    *,
    excel: bool = False,
    topics: Mapping[int, str] | None = None,
) -> int:
    """The list as CSV (spreadsheet-safe); `excel`: with a byte-order mark for Excel."""
    if excel:
        out.write(BOM)
    writer = csv.writer(out)
    writer.writerow(EXPORT_HEADER)
    n = 0
    for row in subscriber_rows(subs, topics):
        writer.writerow([_csv_safe(v) for v in row])
        n += 1
    return n


def export_subscribers(
    session: Session,
    path: Path,
    status: SubscriberStatus | None = None,
    *,
    excel: bool = False,
    settings: Settings | None = None,
) -> int:
    """Write the list to `path` atomically (a temporary file renamed into place), readable by
    its owner only: it is personal data. With `settings`, the topics column names the topics."""
    subs = list_subscribers(session, status)
    topics = topics_text(session, settings, subs) if settings is not None else None
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an old temporary file keeps its mode otherwise
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            n = write_csv(subs, fh, excel=excel, topics=topics)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DigestError(f"cannot write {path}: {exc.strerror}") from None
    return n
