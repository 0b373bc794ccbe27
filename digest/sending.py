"""What `digest send` does, step by step: plan, confirm, freeze, deliver. And its safe
variants: a test copy to a few addresses, and a dry run into a folder."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from pathlib import Path

from sqlmodel import Session, select

from digest.addresses import normalise_address
from digest.config import Settings
from digest.delivery import issue_template, message_id, message_settings, unsubscribe_url
from digest.errors import UsageError
from digest.issues import Draft, active_count, create_issue, delivery_counts, draft_issue, unfinished_issue
from digest.mailer import Sender, SendResult
from digest.message import MessageTemplate, Recipient
from digest.models import Issue, Subscriber, SubscriberStatus, utcnow

TEST_PREFIX = "[TEST] "


@dataclass(frozen=True)
class SendPlan:
    """Either an unfinished issue to resume, or a draft to freeze into a new one."""

    resume: Issue | None
    draft: Draft | None
    recipients: int  # deliveries still to make


def plan_send(
    session: Session,
    settings: Settings,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    note_markdown: str | None = None,
    featured_url: str | None = None,
) -> SendPlan | None:
    """None when there is nothing to do: no unfinished issue and no new items."""
    unfinished = unfinished_issue(session)
    if unfinished is not None:
        if note_markdown or featured_url:  # its content was frozen: nothing can be added now
            raise UsageError(
                f"issue {unfinished.number} is already being sent; --note and --featured "
                "only shape a new issue",
                hint="Run `digest send` without them to finish it first.",
            )
        counts = delivery_counts(session, unfinished.id or 0)
        remaining = counts["queued"] + counts["sending"] + counts["deferred"]
        return SendPlan(resume=unfinished, draft=None, recipients=remaining)
    draft = draft_issue(
        session, settings, since=since, until=until, note_markdown=note_markdown,
        featured_url=featured_url,
    )  # fmt: skip
    if draft is None:
        return None
    return SendPlan(resume=None, draft=draft, recipients=active_count(session))


def start_issue(session: Session, plan: SendPlan) -> Issue:
    """The issue to send: the unfinished one, or the draft frozen now with its recipients."""
    if plan.resume is not None:
        return plan.resume
    assert plan.draft is not None
    return create_issue(session, plan.draft)


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


def dry_run(session: Session, settings: Settings, draft: Draft, folder: Path, sender: Sender) -> int:
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
    from digest.preview import write_views_page

    paths["views"] = write_views_page(folder, f"Issue {draft.number}: {draft.rendered.subject}")
    return paths
