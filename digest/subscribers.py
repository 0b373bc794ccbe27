"""The subscriber list: add, import, change status, export, erase. Every change is logged."""

from __future__ import annotations

import csv
import hashlib
import io
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session, col, select

from digest.addresses import address_key, normalise_address
from digest.errors import DigestError, NotFoundError, UsageError
from digest.models import Subscriber, SubscriberEvent, SubscriberStatus, Suppression, utcnow

MAX_NAME = 200


def suppression_hash(email: str) -> str:
    return hashlib.sha256(address_key(email).encode()).hexdigest()


def _clean_name(name: str | None) -> str:
    if not name:
        return ""
    # Names reach the To: header; no line breaks or control characters, bounded length.
    return " ".join("".join(ch if ch.isprintable() else " " for ch in name).split())[:MAX_NAME]


def _record(session: Session, sub: Subscriber, source: str, detail: str = "") -> None:
    assert sub.id is not None
    session.add(
        SubscriberEvent(
            subscriber_id=sub.id, at=sub.status_changed_at, status=sub.status,
            source=source, detail=detail,
        )
    )  # fmt: skip


def get_subscriber(session: Session, email: str) -> Subscriber:
    sub = session.exec(
        select(Subscriber).where(Subscriber.email_key == address_key(email.strip()))
    ).first()
    if sub is None:
        raise NotFoundError(
            f"no subscriber {email.strip()!r}", hint="`digest subscribers list` shows the list."
        )
    return sub


def _is_suppressed(session: Session, email: str) -> bool:
    h = suppression_hash(email)
    return (
        session.exec(select(Suppression.id).where(Suppression.email_hash == h)).first() is not None
    )


def add_subscriber(
    session: Session,
    *,
    email: str,
    name: str | None = None,
    status: SubscriberStatus = SubscriberStatus.active,
    source: str = "cli",
    allow_suppressed: bool = False,
) -> Subscriber:
    """Add one subscriber. Raises UsageError for an invalid, duplicate or removed address.

    `allow_suppressed` is for a person asking again themselves (web subscribe, then confirm).
    """
    try:
        normalised = normalise_address(email)
    except ValueError as exc:
        raise UsageError(f"invalid address {email.strip()!r}: {exc}") from None
    if status not in (SubscriberStatus.active, SubscriberStatus.pending):
        raise UsageError("a new subscriber is either active or pending")
    if not allow_suppressed and _is_suppressed(session, normalised):
        raise UsageError(
            f"{normalised} was removed from the list earlier and is suppressed",
            hint="They can subscribe again themselves; digest will not re-add them silently.",
        )
    now = utcnow()
    sub = Subscriber(
        uid=secrets.token_hex(16),
        email=normalised,
        email_key=address_key(normalised),
        name=_clean_name(name),
        status=status,
        status_source=source,
        created_at=now,
        status_changed_at=now,
        confirmed_at=now if status == SubscriberStatus.active else None,
    )
    session.add(sub)
    try:
        with session.begin_nested():
            session.flush()
    except sa.exc.IntegrityError:
        raise UsageError(f"{normalised} is already subscribed") from None
    _record(session, sub, source, "added")
    return sub


@dataclass
class ImportReport:
    added: int = 0
    duplicates: list[tuple[int, str]] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)


def import_subscribers(
    session: Session,
    path: Path,
    *,
    status: SubscriberStatus = SubscriberStatus.active,
    source: str = "import",
) -> ImportReport:
    """Import a CSV with a header row (`email` required, `name` optional).

    Valid rows are kept, duplicates skipped, and every rejected row is reported with its line
    number and reason. A file that is not a usable CSV at all raises before anything is added.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text", hint="Save the CSV as UTF-8.") from None
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(content[:4096], ",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(content, newline=""), dialect, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise UsageError(
            f"{path} is empty", hint="The first row must name the columns: email,name"
        ) from None
    except csv.Error as exc:
        raise UsageError(f"{path} is not a valid CSV file: {exc}") from None
    columns = [h.strip().lower() for h in header]
    if "email" not in columns:
        raise UsageError(
            f"{path} has no 'email' column (header row: {', '.join(header) or 'empty'})",
            hint="The first row must name the columns, e.g.: email,name",
        )
    i_email, i_name = columns.index("email"), columns.index("name") if "name" in columns else None
    report = ImportReport()
    seen: set[str] = set()
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) <= i_email:
                report.rejected.append((line, "no email value in this row"))
                continue
            email = row[i_email]
            name = row[i_name] if i_name is not None and len(row) > i_name else None
            try:
                normalised = normalise_address(email)
            except ValueError as exc:
                report.rejected.append((line, f"{email.strip()!r}: {exc}"))
                continue
            key = address_key(normalised)
            if (
                key in seen
                or session.exec(select(Subscriber.id).where(Subscriber.email_key == key)).first()
            ):
                report.duplicates.append((line, normalised))
                seen.add(key)
                continue
            seen.add(key)
            try:
                add_subscriber(session, email=normalised, name=name, status=status, source=source)
            except UsageError as exc:
                report.rejected.append((line, exc.message))
                continue
            report.added += 1
    except csv.Error as exc:
        raise UsageError(
            f"{path} line {reader.line_num}: not valid CSV ({exc}); nothing was imported"
        ) from None
    return report


def list_subscribers(
    session: Session, status: SubscriberStatus | None = None
) -> Sequence[Subscriber]:
    query = select(Subscriber).order_by(col(Subscriber.id))
    if status is not None:
        query = query.where(Subscriber.status == status)
    return session.exec(query).all()


def set_status(
    session: Session, sub: Subscriber, status: SubscriberStatus, *, source: str, detail: str = ""
) -> bool:
    """Change a subscriber's status; False when it already was `status`."""
    if sub.status == status:
        return False
    now = utcnow()
    sub.status = status
    sub.status_source = source
    sub.status_changed_at = now
    if status == SubscriberStatus.active and sub.confirmed_at is None:
        sub.confirmed_at = now
    session.add(sub)
    session.flush()
    _record(session, sub, source, detail)
    return True


def unsubscribe(session: Session, email: str, *, source: str = "cli") -> bool:
    return set_status(
        session, get_subscriber(session, email), SubscriberStatus.unsubscribed, source=source
    )


def confirm_subscriber(session: Session, email: str, *, source: str = "cli") -> Subscriber:
    """Make a pending subscriber active, for consent received another way (staff confirm)."""
    sub = get_subscriber(session, email)
    if sub.status != SubscriberStatus.pending:
        raise UsageError(f"{sub.email} is {sub.status}, not pending")
    set_status(session, sub, SubscriberStatus.active, source=source, detail="confirmed by staff")
    return sub


def remove_subscriber(session: Session, email: str) -> None:
    """Erase a person: their row and consent log go; a hash stays so they are not re-added.

    Their past delivery rows stay, without a link to anyone, so issue counts remain true.
    """
    sub = get_subscriber(session, email)
    h = suppression_hash(sub.email)
    if not _is_suppressed(session, sub.email):
        session.add(Suppression(email_hash=h, reason="removed"))
    session.delete(sub)
    session.flush()


def _csv_safe(value: str) -> str:
    # A cell starting with = + - @ (or tab/CR) is a formula to a spreadsheet (CSV injection).
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def subscriber_rows(subs: Iterable[Subscriber]) -> Iterable[list[str]]:
    for s in subs:
        yield [
            s.email,
            s.name,
            s.status,
            s.created_at.isoformat(timespec="seconds"),
            s.confirmed_at.isoformat(timespec="seconds") if s.confirmed_at else "",
        ]


EXPORT_HEADER = ["email", "name", "status", "created_at", "confirmed_at"]


def write_csv(subs: Iterable[Subscriber], out: io.TextIOBase | io.StringIO) -> int:
    writer = csv.writer(out)
    writer.writerow(EXPORT_HEADER)
    n = 0
    for row in subscriber_rows(subs):
        writer.writerow([_csv_safe(v) for v in row])
        n += 1
    return n


def export_subscribers(session: Session, path: Path, status: SubscriberStatus | None = None) -> int:
    """Write the list to `path` atomically (a temporary file renamed into place)."""
    subs = list_subscribers(session, status)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            n = write_csv(subs, fh)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DigestError(f"cannot write {path}: {exc.strerror}") from None
    return n
