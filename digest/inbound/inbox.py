"""The two ways in: `fetch_inbox` reads mailboxes (cron), `receive_message` takes one message
from an MTA pipe. Both classify and act through act.process_message, one message at a time."""

from __future__ import annotations

import mailbox
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from digest.config import Settings
from digest.errors import ConfigError, TemporaryFailure, UsageError
from digest.inbound.act import InboxSummary, Outcome, process_message, record_smtp_failures
from digest.inbound.sources import open_mailbox
from digest.inbound.spec import SourceSpec, parse_source
from digest.models import InboundKind, utcnow


def source_specs(settings: Settings, sources: Sequence[str]) -> list[SourceSpec]:
    """The mailboxes to read: those named, or the setting inbox_url."""
    names = list(sources) or ([settings.inbox_url] if settings.inbox_url else [])
    if not names:
        raise ConfigError(
            "no mailbox to read: name one, or set inbox_url",
            hint="e.g. `digest inbox fetch imaps://bounces@mail.example.org/INBOX`, or set "
            "DIGEST_INBOX_URL.",
        )
    specs = []
    for name in names:
        try:
            specs.append(parse_source(name))
        except ValueError as exc:
            raise UsageError(f"mailbox {name!r}: {exc}") from None
    return specs


def fetch_inbox(
    engine: Engine,
    settings: Settings,
    sources: Sequence[str] = (),
    *,
    now: datetime | None = None,
    on_outcome: Callable[[str, Outcome], None] | None = None,
) -> InboxSummary:
    """Read every message of the mailboxes and act on each (see act.py). Reports are marked
    done in the mailbox (IMAP: \\Seen, moved to inbox_done_folder); mail for a person stays.

    Each message is committed on its own: an error part-way (the server goes away) keeps
    what was processed, and the next run carries on; nothing is half-applied.
    """
    specs = source_specs(settings, sources)
    settings.secret_key_bytes()  # a missing key is a setup error before anything is read
    summary = InboxSummary()
    summary.smtp_failures = record_smtp_failures(engine, settings, now=now)
    for spec in specs:
        with open_mailbox(spec, settings) as box:
            for item in box.messages():
                if item.raw is None:
                    size = item.size // (1024 * 1024)
                    outcome = Outcome(
                        InboundKind.person,
                        detail=f"{size} MB: too large to be a report; left alone",
                    )
                else:
                    outcome = process_message(
                        engine, settings, item.raw, source=box.display, now=now or utcnow()
                    )
                if outcome.kind != InboundKind.person:
                    box.done(item.ref)
                summary.outcomes.append(outcome)
                if on_outcome is not None:
                    on_outcome(f"{box.display} {item.ref}", outcome)
    return summary


def receive_message(
    engine: Engine,
    settings: Settings,
    raw: bytes,
    *,
    recipient: str | None = None,
    keep: Path | None = None,
    now: datetime | None = None,
) -> Outcome:
    """One message from an MTA (`|digest inbox receive`); `recipient` is its envelope
    recipient ($ORIGINAL_RECIPIENT from Postfix's local(8)), where the VERP token is.

    A pipe has no mailbox to leave mail in, so a message for a person is written to the
    Maildir `keep` (when given), after it was recorded: nothing a person should read is lost.
    """
    record_smtp_failures(engine, settings, now=now)
    if keep is not None:
        _check_maildir(keep)
    outcome = process_message(engine, settings, raw, source="receive", recipient=recipient, now=now)
    if keep is not None and outcome.kind == InboundKind.person and not outcome.already_seen:
        try:
            box = mailbox.Maildir(keep, create=False)
            box.add(raw)  # written to tmp/, then moved to new/: never half a message
        except OSError as exc:
            raise TemporaryFailure(f"cannot keep the message in {keep}: {exc.strerror}") from None
    return outcome


def _check_maildir(path: Path) -> None:
    if not all((path / sub).is_dir() for sub in ("cur", "new", "tmp")):
        raise ConfigError(
            f"--keep {path} is not a Maildir (it needs cur/, new/ and tmp/)",
            hint=f"Create it: mkdir -p {path / 'cur'} {path / 'new'} {path / 'tmp'}",
        )
