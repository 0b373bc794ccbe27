"""The subscriber list: add, import, change status, export, erase. Every change is logged."""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session, col, select

from digest.addresses import address_key, normalise_address
from digest.config import Settings
from digest.errors import NotFoundError, UsageError
from digest.models import Subscriber, SubscriberEvent, SubscriberStatus, Suppression, utcnow
from digest.suppression import find_suppression, suppression_hash
from digest.tokens import Keyring
from digest.topics import PreferenceColumns

MAX_NAME = 200


SUPPRESSED = (SubscriberStatus.unsubscribed, SubscriberStatus.bounced)


def _clean_name(name: str | None) -> str:
    if not name:
        return ""
    # Names reach the To: header; no line breaks or control characters, bounded length.
    return " ".join("".join(ch if ch.isprintable() else " " for ch in name).split())[:MAX_NAME]


def get_subscriber(session: Session, email: str) -> Subscriber:
    sub = session.exec(
        select(Subscriber).where(Subscriber.email_key == address_key(email.strip()))
    ).first()
    if sub is None:
        raise NotFoundError(
            f"no subscriber {email.strip()!r}", hint="`digest subscribers list` shows the list."
        )
    return sub


def _refuse_suppressed(session: Session, keyring: Keyring, email: str) -> None:
    if find_suppression(session, keyring, email) is not None:
        raise UsageError(
            f"{email} was removed from the list earlier and is suppressed",
            hint="They can subscribe again themselves; digest will not re-add them silently.",
        )


def add_subscriber(
    session: Session,
    *,
    email: str,
    keyring: Keyring | None,
    name: str | None = None,
    status: SubscriberStatus = SubscriberStatus.active,
    source: str = "cli",
    allow_suppressed: bool = False,
    allow_special_use: bool = False,
    client: str = "",
) -> Subscriber:
    """Add one subscriber. Raises UsageError for an invalid, duplicate or removed address.

    `allow_suppressed` is for a person asking again themselves (web subscribe, then confirm);
    only then may `keyring` (which recognises removed addresses) be None.
    """
    try:
        normalised = normalise_address(email, allow_special_use=allow_special_use)
    except ValueError as exc:
        raise UsageError(f"invalid address {email.strip()!r}: {exc}") from None
    if status not in (SubscriberStatus.active, SubscriberStatus.pending):
        raise UsageError("a new subscriber is either active or pending")
    if not allow_suppressed:
        assert keyring is not None, "a keyring is needed to recognise removed addresses"
        _refuse_suppressed(session, keyring, normalised)
    now = utcnow()
    sub = _insert(session, _Row(normalised, _clean_name(name), status, source, now, now,
                                now if status == SubscriberStatus.active else None))  # fmt: skip
    session.add(SubscriberEvent.of(sub, sub.status_changed_at, source, "added", client))
    return sub


@dataclass(frozen=True)
class _Row:
    """A subscriber row to insert, as given (by a person, or by an exported list)."""

    email: str
    name: str
    status: SubscriberStatus
    status_source: str
    created_at: datetime
    status_changed_at: datetime
    confirmed_at: datetime | None


def _insert(session: Session, row: _Row) -> Subscriber:
    sub = Subscriber(
        uid=secrets.token_hex(16),
        email=row.email,
        email_key=address_key(row.email),
        name=row.name,
        status=row.status,
        status_source=row.status_source,
        created_at=row.created_at,
        status_changed_at=row.status_changed_at,
        confirmed_at=row.confirmed_at,
    )
    try:
        # the row goes in inside the savepoint (begin_nested flushes what is pending first),
        # so a concurrent insert of the same address rolls back only this
        with session.begin_nested():
            session.add(sub)
            session.flush()
    except sa.exc.IntegrityError:
        raise UsageError(f"{row.email} is already subscribed") from None
    return sub


def claim_subscriber(
    session: Session, *, email: str, name: str | None, source: str, client: str = ""
) -> Subscriber:
    """The subscriber `email` (already normalised), added as `pending` if new, and held for
    the rest of the transaction so that concurrent requests for one address take turns.

    INSERT … ON CONFLICT DO NOTHING (SQLite and PostgreSQL both have it) instead of a savepoint:
    a concurrent insert of the same address waits for the first to commit and then does
    nothing, on both databases. Its write lock (SQLite) or the row lock taken here
    (PostgreSQL, FOR UPDATE) lasts until commit, so what the caller reads next (the last
    confirmation email) is what the other request wrote.
    """
    now = utcnow()
    table = Subscriber.__table__  # type: ignore[attr-defined]
    values = {
        "uid": secrets.token_hex(16), "email": email, "email_key": address_key(email),
        "name": _clean_name(name), "status": SubscriberStatus.pending.value,
        "status_source": source, "created_at": now, "status_changed_at": now,
        "confirmed_at": None,
    }  # fmt: skip
    statement: sa.Executable
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        statement = pg_insert(table).values(**values).on_conflict_do_nothing()
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(table).values(**values).on_conflict_do_nothing()
    added = session.execute(statement).rowcount == 1  # type: ignore[attr-defined]
    sub = session.exec(
        select(Subscriber)
        .where(Subscriber.email_key == values["email_key"])
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    if added:
        session.add(SubscriberEvent.of(sub, sub.status_changed_at, source, "added", client))
    return sub


@dataclass
class ImportReport:
    added: int = 0
    duplicates: list[tuple[int, str]] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)
    # (line, address, status): already on the list, and the file's later unsubscribe or
    # bounce was applied to them
    suppressed: list[tuple[int, str, str]] = field(default_factory=list)


IMPORT_COLUMNS = ("email", "name", "status", "status_source", "created_at",
                  "status_changed_at", "confirmed_at", "topics", "frequency")  # fmt: skip


def import_subscribers(
    session: Session,
    path: Path,
    *,
    keyring: Keyring,
    status: SubscriberStatus | None = None,
    reactivate: bool = False,
    source: str = "import",
    allow_special_use: bool = False,
    settings: Settings | None = None,
) -> ImportReport:
    """Import a CSV with a header row: `email` required; `name`, and the consent columns of
    `digest subscribers export` (status, status_source, created_at, status_changed_at,
    confirmed_at) optional, so an export imports back as it was.

    Consent is never widened by accident: a row that says `unsubscribed` or `bounced` is
    imported as such (never active), whatever `status` says, unless `reactivate` is given
    with `status`. `status` (when given) sets every other row; without it a row keeps its own
    status, or is `active` when the file has none. An address already on the list is skipped,
    except that the file's unsubscribe or bounce, when more recent than their status, is
    applied. Formula escapes added by the export (a leading apostrophe) are removed.

    With `settings`, the `topics` (names, `;` between) and `frequency` columns are read too;
    a row naming an unknown topic is rejected. Valid rows are kept and every rejected row is
    reported with its line number and reason.
    A file that is not a usable CSV at all raises before anything is added.
    """
    if reactivate and status is None:
        raise UsageError(
            "--reactivate needs --status: say what the unsubscribed rows become",
            hint="e.g. --status pending --send-confirmation asks them to confirm again.",
        )
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
    columns = [_csv_unescape(h).strip().lower() for h in header]
    if "email" not in columns:
        raise UsageError(
            f"{path} has no 'email' column (header row: {', '.join(header) or 'empty'})",
            hint="The first row must name the columns, e.g.: email,name",
        )
    index = {c: columns.index(c) for c in IMPORT_COLUMNS if c in columns}
    report = ImportReport()
    prefs = PreferenceColumns(session, settings) if settings is not None else None
    seen: set[str] = set()
    now = utcnow()
    try:
        for cells in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            values = {c: _csv_unescape(cells[i]) for c, i in index.items() if i < len(cells)}
            if "email" not in values:
                report.rejected.append((line, "no email value in this row"))
                continue
            try:
                row = _import_row(values, status, reactivate, source, now, allow_special_use)
                chosen = prefs.parse(values) if prefs is not None else None
            except ValueError as exc:
                report.rejected.append((line, str(exc)))
                continue
            key = address_key(row.email)
            if key in seen:
                report.duplicates.append((line, row.email))
                continue
            seen.add(key)
            existing = session.exec(select(Subscriber).where(Subscriber.email_key == key)).first()
            if existing is not None:
                if _apply_suppression(session, existing, row):
                    report.suppressed.append((line, existing.email, existing.status))
                else:
                    report.duplicates.append((line, row.email))
                continue
            try:
                _refuse_suppressed(session, keyring, row.email)
                sub = _insert(session, row)
            except UsageError as exc:
                report.rejected.append((line, exc.message))
                continue
            session.add(SubscriberEvent.of(sub, now, source, _import_detail(path, row, values)))
            if prefs is not None and chosen is not None:
                prefs.apply(session, sub, chosen)
            report.added += 1
    except csv.Error as exc:
        raise UsageError(
            f"{path} line {reader.line_num}: not valid CSV ({exc}); nothing was imported"
        ) from None
    return report


def _import_row(
    values: dict[str, str],
    status: SubscriberStatus | None,
    reactivate: bool,
    source: str,
    now: datetime,
    allow_special_use: bool,
) -> _Row:
    """The row to insert for one CSV line; ValueError with the reason when it is not valid."""
    email = values["email"]
    try:
        normalised = normalise_address(email, allow_special_use=allow_special_use)
    except ValueError as exc:
        raise ValueError(f"{email.strip()!r}: {exc}") from None
    given = values.get("status", "").strip().lower()
    if given and given not in SubscriberStatus.__members__:
        raise ValueError(
            f"{normalised}: unknown status {given!r} (active, pending, unsubscribed or bounced)"
        )
    file_status = SubscriberStatus(given) if given else None
    if file_status in SUPPRESSED and not reactivate:
        final = file_status
    else:
        final = status or file_status or SubscriberStatus.active
    assert final is not None
    created = _when(values, "created_at", normalised) or now
    changed = _when(values, "status_changed_at", normalised)
    confirmed = _when(values, "confirmed_at", normalised)
    if final != file_status:  # the status is new: it changes now, by this import
        changed, row_source = now, source
    else:
        row_source = _clean_source(values.get("status_source", "")) or source
    if final == SubscriberStatus.active and confirmed is None:
        confirmed = changed or now
    if final == SubscriberStatus.pending:
        confirmed = None
    return _Row(normalised, _clean_name(values.get("name")), final, row_source, created,
                changed or created, confirmed)  # fmt: skip


def _when(values: dict[str, str], column: str, email: str) -> datetime | None:
    text = values.get(column, "").strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{email}: {column} {text!r} is not a date and time (e.g. 2026-11-28T19:53:50+00:00)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _clean_source(text: str) -> str:
    text = text.strip()
    return text if text.isprintable() and len(text) <= 16 else ""


def _import_detail(path: Path, row: _Row, values: dict[str, str]) -> str:
    detail = f"imported from {path.name}"
    if values.get("status"):
        detail += f": {values['status'].strip().lower()} since {row.status_changed_at.isoformat()}"
        if values.get("status_source"):
            detail += f" ({values['status_source'].strip()[:16]})"
        if row.status.value != values["status"].strip().lower():
            detail += f", imported as {row.status.value}"
    return detail


def _apply_suppression(session: Session, sub: Subscriber, row: _Row) -> bool:
    """An unsubscribe or bounce in the file that is newer than what we know wins."""
    if row.status not in SUPPRESSED or sub.status in SUPPRESSED:
        return False
    if row.status_changed_at <= sub.status_changed_at:
        return False
    return set_status(session, sub, row.status, source="import",
                      detail=f"{row.status.value} in an imported list "
                             f"(since {row.status_changed_at.isoformat()})")  # fmt: skip


def list_subscribers(
    session: Session, status: SubscriberStatus | None = None
) -> Sequence[Subscriber]:
    query = select(Subscriber).order_by(col(Subscriber.id))
    if status is not None:
        query = query.where(Subscriber.status == status)
    return session.exec(query).all()


def set_status(
    session: Session,
    sub: Subscriber,
    status: SubscriberStatus,
    *,
    source: str,
    detail: str = "",
    client: str = "",
) -> bool:
    """Change a subscriber's status; False when it already was `status`. The consent log
    records when, the new status, the source, what happened and (web) the client marker."""
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
    session.add(SubscriberEvent.of(sub, sub.status_changed_at, source, detail, client))
    return True


def unsubscribe(session: Session, email: str, *, source: str = "cli") -> bool:
    return set_status(
        session, get_subscriber(session, email), SubscriberStatus.unsubscribed, source=source,
        detail="unsubscribed by staff",
    )  # fmt: skip


def confirm_subscriber(session: Session, email: str, *, source: str = "cli") -> Subscriber:
    """Make a pending subscriber active, for consent received another way (staff confirm)."""
    sub = get_subscriber(session, email)
    if sub.status != SubscriberStatus.pending:
        raise UsageError(f"{sub.email} is {sub.status}, not pending")
    set_status(session, sub, SubscriberStatus.active, source=source, detail="confirmed by staff")
    return sub


def remove_subscriber(session: Session, email: str, *, keyring: Keyring) -> None:
    """Erase a person: their row and consent log go; a keyed hash stays so they are not
    re-added.

    Their past delivery rows stay, without a link to anyone, so issue counts remain true.
    """
    sub = get_subscriber(session, email)
    if find_suppression(session, keyring, sub.email) is None:
        session.add(
            Suppression(
                email_hash=suppression_hash(keyring.current, sub.email),
                key_id=keyring.current_id,
                reason="removed",
            )
        )
    session.delete(sub)
    session.flush()


# A cell starting with = + - @ (or tab/CR) is a formula to a spreadsheet (CSV injection); the
# export puts an apostrophe in front, and the import takes it off again. A value that already
# starts with an apostrophe gets one more, so the round trip is exact.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_unescape(value: str) -> str:
    return value[1:] if value[:1] == "'" and value[1:2] in (*FORMULA_START, "'") else value
