"""The safe variants of a send: a test copy to a few addresses, a dry run into a folder, and the
preview files. None of them records anything."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parseaddr
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from digest.addresses import normalise_address
from digest.compose.recipients import issue_template, message_id, message_settings, unsubscribe_url
from digest.compose.wire import MessageTemplate, Recipient
from digest.config import Settings
from digest.db import session_scope
from digest.errors import UsageError
from digest.issues import Draft, draft_issue
from digest.models import Issue, Subscriber, SubscriberStatus, utcnow
from digest.send.mailer import FileSender, Sender, SendResult, SmtpSender

TEST_PREFIX = "[TEST] "


def draft_template(settings: Settings, draft: Draft, *, test: bool = False) -> MessageTemplate:
    subject = (TEST_PREFIX if test else "") + draft.rendered.subject
    issue = Issue(
        number=draft.number, uid="draft", subject=subject,
        period_start=draft.period_start, period_end=draft.period_end,
        html=draft.rendered.html, text=draft.rendered.text,
    )  # fmt: skip
    return issue_template(settings, issue)


def test_send(
    settings: Settings, draft: Draft, addresses: Sequence[str], sender: Sender
) -> list[tuple[str, SendResult]]:
    """A copy of the next issue to each address, subject marked [TEST]; nothing is recorded."""
    try:
        targets = [normalise_address(a) for a in addresses]
    except ValueError as exc:
        raise UsageError(f"--to: {exc}") from None
    template = draft_template(settings, draft, test=True)
    msg = message_settings(settings)
    envelope_from = parseaddr(settings.from_address)[1]
    results = []
    for address in targets:
        recipient = Recipient(
            email=address,
            name="",
            message_id=f"<digest.test.{secrets.token_hex(8)}@{msg.message_id_domain}>",
            # Not a real token: a test copy must not be able to unsubscribe anyone.
            unsubscribe_url=(f"{settings.base_url}/unsubscribe/test-copy" if settings.base_url
                             else msg.mailto_unsubscribe),
        )  # fmt: skip
        results.append((address, sender.send(envelope_from, address, template.render(recipient))))
    return results


def dry_run(
    session: Session, settings: Settings, draft: Draft, folder: Path, sender: Sender
) -> int:
    """Write the message every active subscriber would get; records nothing."""
    template = draft_template(settings, draft)
    msg = message_settings(settings)
    key = settings.secret_key_bytes()
    envelope_from = parseaddr(settings.from_address)[1]
    n = 0
    subs = session.exec(select(Subscriber).where(Subscriber.status == SubscriberStatus.active))
    for sub in subs:
        recipient = Recipient(
            email=sub.email,
            name=sub.name,
            message_id=message_id("dryrun", sub.uid, msg.message_id_domain),
            unsubscribe_url=unsubscribe_url(settings, msg, key, sub.uid),
        )
        sender.send(envelope_from, sub.email, template.render(recipient))
        n += 1
    return n


def preview_files(settings: Settings, draft: Draft, folder: Path) -> dict[str, Path]:
    """digest.html, digest.txt and digest.eml as a subscriber would see them, and views.html
    showing the HTML at desktop and phone widths side by side."""
    template = draft_template(settings, draft)
    msg = message_settings(settings)
    sample = (
        f"{settings.base_url}/unsubscribe/preview" if settings.base_url else msg.mailto_unsubscribe
    )
    recipient = Recipient(
        email="subscriber@example.org",
        name="Preview Reader",
        message_id=f"<digest.preview.{utcnow():%Y%m%d%H%M%S}@{msg.message_id_domain}>",
        unsubscribe_url=sample,
    )
    from digest.render import PLACEHOLDER_UNSUBSCRIBE

    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "html": folder / "digest.html",
        "text": folder / "digest.txt",
        "eml": folder / "digest.eml",
    }
    paths["html"].write_text(draft.rendered.html.replace(PLACEHOLDER_UNSUBSCRIBE, sample), "utf-8")
    paths["text"].write_text(draft.rendered.text.replace(PLACEHOLDER_UNSUBSCRIBE, sample), "utf-8")
    paths["eml"].write_bytes(template.render(recipient))
    from digest.render.views import write_views_page

    paths["views"] = write_views_page(folder, f"Issue {draft.number}: {draft.rendered.subject}")
    return paths


@dataclass(frozen=True)
class Copies:
    """What `digest send --to` or `digest send --dry-run` did; neither records anything."""

    draft: Draft
    folder: Path | None = None  # --dry-run: where the messages were written
    written: int = 0  # --dry-run: how many
    sent: list[tuple[str, SendResult]] = field(default_factory=list)  # --to: each reply


def send_copies(
    engine: Engine,
    settings: Settings,
    *,
    to: Sequence[str] = (),
    folder: Path | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    note_markdown: str | None = None,
    featured_url: str | None = None,
) -> Copies | None:
    """The next issue as a [TEST] copy to each address in `to`, or, with a `folder` (a dry
    run), every active subscriber's message written there. None when there are no new items."""
    with session_scope(engine) as session:
        draft = draft_issue(session, settings, since=since, until=until,
                            note_markdown=note_markdown, featured_url=featured_url)  # fmt: skip
        if draft is None:
            return None
        if folder is not None:
            n = dry_run(session, settings, draft, folder, FileSender(folder))
            return Copies(draft, folder=folder, written=n)
    sender = SmtpSender(settings.smtp)
    sender.connect()
    try:
        return Copies(draft, sent=test_send(settings, draft, to, sender))
    finally:
        sender.close()
