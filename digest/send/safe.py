"""The safe variants of a send: a test copy to a few addresses, a dry run into a folder, and the
preview files. None of them records anything."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlmodel import Session, select

from digest.addresses import normalise_address
from digest.compose.recipients import Recipients, compose_issue
from digest.compose.wire import MessageTemplate
from digest.config import Settings
from digest.db import Engine, session_scope
from digest.errors import NotFoundError, UsageError
from digest.issues.review import NEXT, pending_issues
from digest.issues.select import Draft, NextIssue, draft_issue, last_issue
from digest.issues.state import archived_issue
from digest.issues.variants import draft_variants
from digest.models import Subscriber, SubscriberStatus, utcnow
from digest.send.mailer import FileSender, Sender, SendResult, SmtpSender
from digest.send.review import CopyOf, copy_of_issue, copy_template, send_copy

TEST_PREFIX = "[TEST] "


def draft_template(settings: Settings, draft: Draft) -> MessageTemplate:
    """The message of a draft (the next issue, not frozen yet)."""
    return compose_issue(
        settings, subject=draft.rendered.subject, html=draft.rendered.html,
        text=draft.rendered.text,
    )  # fmt: skip


def test_send(
    settings: Settings, copy: CopyOf, addresses: Sequence[str], sender: Sender
) -> list[tuple[str, SendResult]]:
    """A copy to each address, subject marked [TEST], its links working; nothing is recorded."""
    try:
        allow = settings.allow_special_use_domains
        targets = [normalise_address(a, allow_special_use=allow) for a in addresses]
    except ValueError as exc:
        raise UsageError(f"--to: {exc}") from None
    template = copy_template(settings, copy, prefix=TEST_PREFIX, now=utcnow())
    return send_copy(settings, template, targets, sender)


def copy_source(
    session: Session, settings: Settings, shape: NextIssue | None = None
) -> CopyOf | None:
    """What `send --to` is a copy of: the draft waiting for approval (or approved), else the
    next issue, else (no new items) the last issue; None when there is none of them."""
    pending = pending_issues(session)
    if pending:
        issue = pending[0]
        if shape and shape.shaped:
            raise UsageError(
                f"issue {issue.number} is already made (a draft for review); --note and "
                "--featured only shape a new issue"
            )
        return copy_of_issue(issue, f"issue {issue.number} ({issue.status})", archived=False)
    draft = draft_issue(session, settings, shape)
    if draft is not None:
        r = draft.rendered
        return CopyOf(draft.number, r.subject, r.html, r.text, NEXT, "the next issue")
    last = last_issue(session)
    if last is None or (shape and shape.shaped):
        return None
    try:
        archived = archived_issue(session, last.number) is not None
    except NotFoundError:
        archived = False
    about = f"issue {last.number}, the last issue (there are no new items)"
    return copy_of_issue(last, about, archived=archived)


def dry_run(
    session: Session, settings: Settings, draft: Draft, folder: Path, sender: Sender
) -> int:
    """Write the message every active subscriber would get (their variant: issues/variants.py;
    none for one who would be skipped); records nothing."""
    template = draft_template(settings, draft)
    recipients = Recipients.of(settings, issue_uid="dryrun", key=settings.secret_key_bytes())
    parts = draft_variants(session, draft.items, draft.audience, draft.render_part)
    templates: dict[int, MessageTemplate] = {}  # one per variant
    n = 0
    subs = session.exec(select(Subscriber).where(Subscriber.status == SubscriberStatus.active))
    for sub in subs:
        chosen = template
        if sub.id in parts:
            rendered = parts[sub.id]
            if rendered is None:
                continue  # nothing of theirs in it: not mailed
            if id(rendered) not in templates:
                templates[id(rendered)] = draft_template(
                    settings, replace(draft, rendered=rendered)
                )
            chosen = templates[id(rendered)]
        r = recipients.subscriber(sub.uid, sub.email, sub.name)
        sender.send(r.envelope_from, sub.email, chosen.render(r))
        n += 1
    return n


def preview_files(settings: Settings, draft: Draft, folder: Path) -> dict[str, Path]:
    """digest.html, digest.txt and digest.eml as a subscriber would see them, and views.html
    showing the HTML at desktop and phone widths side by side."""
    template = draft_template(settings, draft)
    recipient = Recipients.of(settings).preview()
    sample, prefs = recipient.unsubscribe_url, recipient.preferences_url
    from digest.render import fill_links

    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "html": folder / "digest.html",
        "text": folder / "digest.txt",
        "eml": folder / "digest.eml",
    }
    paths["html"].write_text(fill_links(draft.rendered.html, sample, prefs), "utf-8")
    paths["text"].write_text(fill_links(draft.rendered.text, sample, prefs), "utf-8")
    paths["eml"].write_bytes(template.render(recipient))
    from digest.render.views import write_views_page

    paths["views"] = write_views_page(folder, f"Issue {draft.number}: {draft.rendered.subject}")
    return paths


@dataclass(frozen=True)
class Copies:
    """What `digest send --to` or `digest send --dry-run` did; neither records anything."""

    about: str  # what it is a copy of, for people
    folder: Path | None = None  # --dry-run: where the messages were written
    written: int = 0  # --dry-run: how many
    sent: list[tuple[str, SendResult]] = field(default_factory=list)  # --to: each reply


def send_copies(
    engine: Engine,
    settings: Settings,
    shape: NextIssue | None = None,
    *,
    to: Sequence[str] = (),
    folder: Path | None = None,
) -> Copies | None:
    """A [TEST] copy to each address in `to` (of what `copy_source` finds), or, with a `folder`
    (a dry run), every active subscriber's message of the next issue written there. None when
    there is nothing to copy (a dry run: no new items)."""
    with session_scope(engine) as session:
        if folder is not None:
            draft = draft_issue(session, settings, shape)
            if draft is None:
                return None
            n = dry_run(session, settings, draft, folder, FileSender(folder))
            return Copies("the next issue", folder=folder, written=n)
        copy = copy_source(session, settings, shape)
    if copy is None:
        return None
    sender = SmtpSender(settings.smtp)
    sender.connect()
    try:
        return Copies(copy.about, sent=test_send(settings, copy, to, sender))
    finally:
        sender.close()
