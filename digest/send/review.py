"""Copies of an issue for staff, which record nothing about subscribers: the review copy of a
draft (review = "required", issues/review.py) and the test copies of `digest send --to`.

Their view-online link goes to /review/TOKEN, a page the web server shows for
REVIEW_LINK_DAYS to whoever has the copy (an issue already in the public archive keeps its
archive link), and their unsubscribe link to a page saying that this is a test copy.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from digest.compose.recipients import Recipients, compose_issue
from digest.compose.wire import MessageTemplate
from digest.config import Settings
from digest.db import Engine, session_scope
from digest.errors import DigestError, TemporaryFailure
from digest.issues.review import review_link
from digest.issues.state import get_issue
from digest.models import Issue
from digest.send.lock import review_lock
from digest.send.mailer import Sender, SendResult, SmtpSender
from digest.send.plan import ScheduledPlan

REVIEW_PREFIX = "[REVIEW] "
_BODY = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


@dataclass(frozen=True)
class CopyOf:
    """What a staff copy is a copy of: a stored issue, or the next issue drafted now."""

    number: int
    subject: str
    html: str
    text: str
    link_payload: str | None  # the review link's (issue uid or NEXT); None: keep the archive's
    about: str  # for people: "issue 4 (draft)", "the next issue"


def copy_of_issue(issue: Issue, about: str, *, archived: bool) -> CopyOf:
    return CopyOf(issue.number, issue.subject, issue.html, issue.text,
                  None if archived else issue.uid, about)  # fmt: skip


def online_links(settings: Settings, copy: CopyOf, *, now: datetime) -> tuple[str, str, str | None]:
    """(html, text, link): the issue's view-online links pointed at its review page."""
    if not settings.base_url:
        return copy.html, copy.text, None
    archive_url = f"{settings.base_url}/archive/{copy.number}"
    if copy.link_payload is None:
        return copy.html, copy.text, archive_url
    link = review_link(settings, copy.link_payload, now=now) or archive_url
    pattern = re.compile(re.escape(archive_url) + r"(?![0-9])")
    # tokens are URL-safe (letters, digits, - and _): nothing to escape in an href
    return pattern.sub(link, copy.html), pattern.sub(link, copy.text), link


def with_banner(html: str, text: str, lines: Sequence[str], link: str | None) -> tuple[str, str]:
    """A banner at the top of both bodies (a review copy says what it is before anything)."""
    style = (
        "margin:0;padding:12px 16px;background-color:#fff3cd;color:#4d3800;"
        "border-bottom:3px solid #b38600;font-family:Arial,Helvetica,sans-serif;font-size:15px;"
    )
    body = "<br>".join(html_lib.escape(line) for line in lines)
    if link:
        body += f'<br><a href="{html_lib.escape(link)}" style="color:#4d3800;">View it online</a>'
    banner = f'<div role="note" style="{style}"><strong>{body}</strong></div>'
    match = _BODY.search(html)
    if match:
        html = html[: match.end()] + banner + html[match.end() :]
    top = "\n".join(lines) + (f"\nView it online: {link}" if link else "")
    return html, f"{top}\n{'=' * 72}\n\n{text}"


def copy_template(
    settings: Settings,
    copy: CopyOf,
    *,
    prefix: str,
    banner: Sequence[str] = (),
    now: datetime,
) -> MessageTemplate:
    """The message of a staff copy: subject marked, links working, an optional banner."""
    html, text, link = online_links(settings, copy, now=now)
    if banner:
        html, text = with_banner(html, text, banner, link)
    return compose_issue(settings, subject=prefix + copy.subject, html=html, text=text)


def send_copy(
    settings: Settings, template: MessageTemplate, targets: Sequence[str], sender: Sender
) -> list[tuple[str, SendResult]]:
    """The copy to each address, with a link that cannot unsubscribe anyone."""
    recipients = Recipients.of(settings)
    results = []
    for address in targets:
        r = recipients.test_copy(address)
        results.append((address, sender.send(r.envelope_from, address, template.render(r))))
    return results


def send_review_copy(
    engine: Engine, settings: Settings, number: int, *, notify: Callable[[str], None],
    now: datetime,
) -> None:  # fmt: skip
    """The review copy of draft `number` to review_to; recorded once one address took it, so
    later scheduled runs do not send it again (nor one running at the same time)."""
    with review_lock(engine, number) as mine:
        if not mine:
            notify(f"Another run is sending the review copy of issue {number}.")
            return
        with session_scope(engine) as session:
            issue = get_issue(session, number)  # read again now that the lock is ours
            if issue.review_sent_at is not None:
                return  # the run that had the lock sent it
            copy = copy_of_issue(issue, f"issue {number}", archived=False)
        _send_review_copy(engine, settings, copy, notify=notify, now=now)


def _send_review_copy(
    engine: Engine, settings: Settings, copy: CopyOf, *, notify: Callable[[str], None],
    now: datetime,
) -> None:  # fmt: skip
    number = copy.number
    banner = [
        f"REVIEW COPY of issue {number}: not sent to subscribers yet.",
        f"To send it to the list: digest issues approve {number}",
        f"To take in items added or removed since: digest issues refresh {number}",
    ]
    template = copy_template(settings, copy, prefix=REVIEW_PREFIX, banner=banner, now=now)
    sender = SmtpSender(settings.smtp)
    sender.connect()  # SmtpUnavailable: exit 75, the draft stays and the next run tries again
    try:
        results = send_copy(settings, template, settings.review_to, sender)
    finally:
        sender.close()
    for address, result in results:
        said = "sent" if result.outcome == "sent" else "NOT sent"
        notify(f"Review copy of issue {number} to {address}: {said} ({result.reply})")
    if any(result.outcome == "sent" for _, result in results):
        with session_scope(engine) as session:
            i = Issue.__table__  # type: ignore[attr-defined]
            session.execute(sa.update(i).where(i.c.number == number).values(review_sent_at=now))
    refused = [a for a, result in results if result.outcome != "sent"]
    if not refused:
        return
    if len(refused) == len(results) and all(r.outcome == "temporary" for _, r in results):
        raise TemporaryFailure(
            f"the review copy of issue {number} was not accepted yet",
            hint="The next scheduled run sends it again.",
        )
    raise DigestError(
        f"the review copy of issue {number} was refused for {', '.join(refused)}",
        hint="Check review_to in the settings.",
    )


def after_review_step(
    engine: Engine, settings: Settings, decision: ScheduledPlan, *,
    notify: Callable[[str], None], now: datetime,
) -> None:  # fmt: skip
    """What a scheduled run does after planning: a due review copy, then a stale draft's error
    (its state was committed with the plan)."""
    if decision.review is not None:
        send_review_copy(engine, settings, decision.review.number, notify=notify, now=now)
    if decision.error is not None:
        raise decision.error
