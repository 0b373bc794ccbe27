"""Choose the items of the next issue and render its draft (nothing is stored here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from digest.config import Settings
from digest.errors import DigestError, UsageError
from digest.issues.variants import Audience, Renderer
from digest.models import (
    Issue,
    IssueItem,
    IssueStatus,
    NewsItem,
    utcnow,
)
from digest.news.control import control_filter, included_filter
from digest.news.normalise import item_key
from digest.render.fit import GMAIL_CLIP_BYTES
from digest.render.issue import Branding, ItemView, RenderedIssue, render_issue
from digest.render.templates import make_environment


def branding(settings: Settings) -> Branding:
    return Branding(
        name=settings.name,
        organisation=settings.organisation,
        postal_address=settings.postal_address,
        base_url=settings.base_url,
        timezone=settings.tz,
        subject_template=settings.subject,
        logo_url=settings.logo_url,
        accent_colour=settings.accent_colour,
        footer_text=settings.footer_text,
        language=settings.language,
        sections=tuple(settings.sections),
    )


@dataclass(frozen=True)
class Draft:
    """What the next issue would be: its number, period, items and rendered content."""

    number: int
    period_start: datetime
    period_end: datetime
    items: Sequence[NewsItem]
    rendered: RenderedIssue
    message_id_domain: str = ""  # frozen into the issue: its Message-IDs never change
    # who it is for, and how a part of it (a variant: some of its items) is rendered; a draft
    # without an audience goes whole to every active subscriber
    audience: Audience | None = None
    render_part: Renderer | None = None
    note_markdown: str = ""  # how staff shaped it, kept with the issue (review drafts)
    featured_url: str | None = None


def read_note(path: str | Path) -> str:
    """The Markdown of an editor's note file (`--note FILE.md`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--note: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--note: cannot read {path}: {exc}") from None
    if len(text) > 20_000:
        raise UsageError(f"--note: {path} is {len(text)} characters; keep a note under 20,000")
    return text


def last_issue(session: Session) -> Issue | None:
    return session.exec(select(Issue).order_by(col(Issue.number).desc())).first()


def for_readers_of(frequency: str | None) -> Any:
    """Issues whose readers include those of `frequency` (its own, and issues for everyone);
    None: every issue."""
    if frequency is None:
        return sa.true()
    return sa.or_(col(Issue.frequency) == frequency, col(Issue.frequency).is_(None))


def default_window(
    session: Session, settings: Settings, now: datetime, *, frequency: str | None = None
) -> tuple[datetime, datetime]:
    """Since the end of the last issue (of this frequency), or `lookback_days` back on the
    first run; until now. A draft that was never sent (stale or discarded: issues/review.py)
    leaves its period to the next issue: since where it began."""
    last = session.exec(
        select(Issue).where(for_readers_of(frequency)).order_by(col(Issue.number).desc())
    ).first()
    if last is None:
        return now - timedelta(days=settings.lookback_days), now
    never_sent = last.status in (IssueStatus.stale, IssueStatus.discarded)
    return (last.period_start if never_sent else last.period_end), now


def select_items(
    session: Session,
    since: datetime,
    until: datetime,
    *,
    late: timedelta = timedelta(0),
    frequency: str | None = None,
) -> Sequence[NewsItem]:
    """Items no earlier issue carried, published before `until`, newest first: those published
    since `since`, and those that arrived (or staff released) since then with a date up to
    `late` earlier (a feed fetched after the last issue went out must not lose its items, nor
    a held item released after it); and those staff included whatever their date. Never an
    item staff held back or removed. `frequency`: only the issues of that frequency (and
    those for everyone) count as earlier ones."""
    already = (
        select(IssueItem.news_item_id)
        .join(Issue, col(Issue.id) == col(IssueItem.issue_id))
        .where(col(IssueItem.news_item_id).is_not(None), for_readers_of(frequency))
    )
    in_period = sa.and_(
        col(NewsItem.published_at) < until,
        sa.or_(
            col(NewsItem.published_at) >= since,
            sa.and_(
                # arrived (or was released or restored by staff) since then
                sa.or_(col(NewsItem.created_at) >= since, col(NewsItem.control_at) >= since),
                col(NewsItem.published_at) >= since - late,
            ),
        ),
    )
    query = (
        select(NewsItem)
        .where(sa.or_(in_period, included_filter()))  # staff's `news include`: any date
        .where(control_filter())  # not held, not removed
        .where(col(NewsItem.id).not_in(already))
        .order_by(col(NewsItem.published_at).desc(), col(NewsItem.id))
    )
    return session.exec(query).all()


def _views(items: Sequence[NewsItem]) -> list[ItemView]:
    return [
        ItemView(
            title=i.title,
            url=i.url,
            summary_html=i.summary_html,
            category=i.category,
            published_at=i.published_at,
            source=i.source,
        )
        for i in items
    ]


@dataclass(frozen=True)
class NextIssue:
    """What staff may say about the next issue: its period (default: since the last issue)
    and an editor's note (Markdown) and featured item (the link of one of its items)."""

    since: datetime | None = None
    until: datetime | None = None
    note_markdown: str | None = None
    featured_url: str | None = None

    @property
    def shaped(self) -> bool:
        """A note or a featured item: only a new issue can have them."""
        return bool(self.note_markdown or self.featured_url)


def draft_issue(
    session: Session,
    settings: Settings,
    shape: NextIssue | None = None,
    *,
    now: datetime | None = None,
    frequency: str | None = None,
) -> Draft | None:
    """Render the next issue without storing anything; None when there are no new items.
    `frequency`: the issue of its subscribers (None: for every active subscriber).

    The note and the featured item are rendered into the issue here, so they are frozen with it.
    """
    shape = shape or NextIssue()
    now = now or utcnow()
    d_since, d_until = default_window(session, settings, now, frequency=frequency)
    since, until = shape.since or d_since, shape.until or d_until
    if since >= until:
        raise DigestError(
            f"the period is empty: --since {since:%Y-%m-%d %H:%M} is not before "
            f"--until {until:%Y-%m-%d %H:%M} (UTC)"
        )
    late = timedelta(days=settings.lookback_days)
    items = select_items(session, since, until, late=late, frequency=frequency)
    if not items:
        return None
    last = last_issue(session)
    number = (last.number + 1) if last else 1
    render = part_renderer(settings, items, since=since, until=until, number=number,
                           note_markdown=shape.note_markdown, featured_url=shape.featured_url)  # fmt: skip
    return Draft(
        number=number, period_start=since, period_end=until, items=items,
        rendered=render(items), message_id_domain=settings.from_domain,
        audience=Audience.of(settings, frequency), render_part=render,
        note_markdown=shape.note_markdown or "", featured_url=shape.featured_url,
    )  # fmt: skip


def part_renderer(
    settings: Settings,
    items: Sequence[NewsItem],
    *,
    since: datetime,
    until: datetime,
    number: int,
    note_markdown: str | None,
    featured_url: str | None,
) -> Renderer:
    """How the issue of `items`, or a variant of it (some of its items), is rendered: with the
    note, and the featured item only where the variant has it; the templates compiled once."""
    featured = item_key(featured_url.strip()) if featured_url else None
    env = make_environment(settings.templates_dir)  # compiled once for the issue and its variants

    def render(part: Sequence[NewsItem]) -> RenderedIssue:
        return render_issue(
            branding(settings), _views(part), period_start=since, period_end=until,
            number=number, templates_dir=settings.templates_dir,
            note_markdown=note_markdown, env=env,
            featured_url=featured_url
            if part is items or any(item_key(i.url) == featured for i in part) else None,
        )  # fmt: skip

    return render


class TooLarge(DigestError):
    """An issue Gmail would clip (hiding its footer and unsubscribe link): never sent."""


def ensure_fits(draft: Draft) -> None:
    """Refuse an issue whose HTML is still over Gmail's clipping limit after the size guard
    (it had nowhere to leave the rest: no base_url, so no web archive to link to)."""
    size = len(draft.rendered.html.encode("utf-8"))
    if size <= GMAIL_CLIP_BYTES:
        return
    n = len(draft.items)
    fit = draft.rendered.fit
    if fit is None or not fit.archived:
        hint = (
            "Set base_url (the public address of `digest serve`): the size guard then leaves "
            "the items that do not fit to the issue's web version and links to it. Or send "
            "fewer items at a time (`digest send --since … --until …`)."
        )
    else:
        hint = "Send fewer items at a time (`digest send --since … --until …`)."
    raise TooLarge(
        f"issue {draft.number} would be {size / 1000:,.0f} KB of HTML ({n} items), over "
        f"Gmail's clipping limit of about {GMAIL_CLIP_BYTES / 1000:.0f} KB: readers would not "
        "see the rest, the unsubscribe link included; nothing was sent",
        hint=hint,
    )
