"""Web versions of issues: the archive of sent issues and the staff preview of the next one.

An issue's web version is its frozen HTML (the exact email content). The only per-recipient
value in it, the unsubscribe link, becomes a neutral page that explains how to unsubscribe
with the link in one's own email: a web version never carries anyone's token.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime

from digest.config import Settings
from digest.dates import human_date
from digest.db import Session
from digest.issues.review import (
    NEVER_SENT,
    NEXT,
    PENDING,
    draft_words,
    issue_by_uid,
    read_review_token,
)
from digest.issues.state import archived_issue, archived_issues
from digest.render import fill_links
from digest.send.plan import plan_send

_BODY = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


@dataclass(frozen=True)
class ArchiveEntry:
    number: int
    subject: str
    date: str  # when it was sent, in the newsletter's time zone
    sent_at: datetime


def list_archive(session: Session, settings: Settings) -> list[ArchiveEntry]:
    """Every issue sent or being sent (its mail carries the link), newest first."""
    issues = archived_issues(session)
    return [
        ArchiveEntry(i.number, i.subject, human_date(i.created_at, settings.tz), i.created_at)
        for i in issues
    ]


def web_version(issue_html: str, *, unsubscribe_help_url: str, banner_html: str = "") -> str:
    """An issue's HTML for a browser: the unsubscribe and preferences placeholders made
    neutral (a page saying to use the reader's own email's link), and an optional banner
    (already escaped HTML) at the top of the body."""
    neutral = html.escape(unsubscribe_help_url)
    out = fill_links(issue_html, neutral, neutral)
    if banner_html:
        match = _BODY.search(out)
        if match:
            out = out[: match.end()] + banner_html + out[match.end() :]
    return out


def _banner(text: str, link_url: str, link_text: str) -> str:
    style = (
        "margin:0;padding:10px 16px;background-color:#dbe4ee;color:#1f3a5f;"
        "font-family:Arial,Helvetica,sans-serif;font-size:14px;text-align:center;"
    )
    link = f'<a href="{html.escape(link_url)}" style="color:#1a5c9e;">{html.escape(link_text)}</a>'
    return f'<div role="navigation" style="{style}">{html.escape(text)}{link}</div>'


def archive_page(session: Session, number: int, *, root: str) -> str:
    """The web version of issue `number`; NotFoundError when there is none, or nobody got it."""
    issue = archived_issue(session, number)
    return web_version(
        issue.html,
        unsubscribe_help_url=f"{root}/unsubscribe",
        banner_html=_banner(f"Issue {issue.number}. ", f"{root}/archive", "All past issues"),
    )


def preview_page(session: Session, settings: Settings, *, root: str) -> tuple[int, str] | None:
    """(number, HTML) of what the next `digest send` would send: the unfinished issue it would
    resume, or the next issue drafted now. None when there is nothing to send. Stores nothing."""
    plan = plan_send(session, settings)
    if plan is None:
        return None
    if plan.resume is not None:
        number, body = plan.resume.number, plan.resume.html
        note = f"Staff preview: issue {number} is being sent; a send now resumes it. "
        if plan.resume.status in PENDING:
            note = f"Staff preview: issue {number}, {draft_words(plan.resume, settings)}. "
    else:
        assert plan.draft is not None
        number, body = plan.draft.number, plan.draft.rendered.html
        note = f"Staff preview: issue {number} as the next send would make it; not sent yet. "
    page = web_version(
        body,
        unsubscribe_help_url=f"{root}/unsubscribe",
        banner_html=_banner(note, f"{root}/archive", "Past issues"),
    )
    return number, page


def review_page(
    session: Session, settings: Settings, token: str, *, root: str, now: datetime
) -> str | None:
    """The page of a review or test copy's view-online link: the issue it names whatever its
    state (a draft too), or the next issue as a send would make it now; None for a bad or
    expired token. The issue's own unsubscribe placeholder is made neutral, as in the archive."""
    payload = read_review_token(settings, token, now=now)
    if payload is None:
        return None
    if payload == NEXT:
        found = preview_page(session, settings, root=root)
        return found[1] if found else ""
    issue = issue_by_uid(session, payload)
    if issue is None:
        return None
    if issue.status in PENDING or issue.status in NEVER_SENT:
        note = f"Review copy: issue {issue.number}, {draft_words(issue, settings)}; not sent to subscribers yet. "
        if issue.status in NEVER_SENT:
            note = f"Issue {issue.number} was never sent ({draft_words(issue, settings)}). "
    else:
        note = f"Issue {issue.number}, sent. "
    return web_version(
        issue.html,
        unsubscribe_help_url=f"{root}/unsubscribe",
        banner_html=_banner(note, f"{root}/archive", "Past issues"),
    )
