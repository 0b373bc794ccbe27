"""Render an issue to HTML and text with Jinja2, CSS inlined: once per issue (stages 4 and 5).

Per-recipient values are not known here. They appear as URL-safe placeholders (letters only,
so neither premailer nor quoted-printable encoding can alter them) that digest.compose fills in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import jinja2

from digest.dates import date_range, human_date, short_date
from digest.errors import ConfigError, UsageError
from digest.news.categories import DEFAULT_SECTION, category_key, order_sections
from digest.news.normalise import html_to_text, item_key, sanitise_html
from digest.render import PLACEHOLDER_PREFERENCES, PLACEHOLDER_UNSUBSCRIBE
from digest.render.fit import HTML_SIZE_TARGET, Fit, largest, layout
from digest.render.inline import inline_css
from digest.render.templates import TEMPLATE_HTML, TEMPLATE_TEXT, make_environment, render_template

RTL_LANGUAGES = frozenset(
    {"ar", "arc", "ckb", "dv", "fa", "he", "ks", "ku", "ps", "sd", "ug", "ur", "yi"}
)


@dataclass(frozen=True)
class ItemView:
    title: str
    url: str
    summary_html: str
    category: str
    published_at: datetime
    source: str = ""  # where it came from, shown next to the date ("" shows the link's host)


@dataclass(frozen=True)
class Branding:
    name: str
    organisation: str
    postal_address: str
    base_url: str | None
    timezone: ZoneInfo
    subject_template: str
    logo_url: str | None = None  # https, checked by the settings
    accent_colour: str = "#1f3a5f"
    footer_text: str = ""
    language: str = "en"
    sections: tuple[str, ...] = ()  # the order of the sections (the setting `sections`)

    @property
    def direction(self) -> str:
        return "rtl" if self.language.split("-")[0].lower() in RTL_LANGUAGES else "ltr"


@dataclass(frozen=True)
class RenderedIssue:
    subject: str
    html: str  # CSS inlined, with PLACEHOLDER_UNSUBSCRIBE (and _PREFERENCES with base_url)
    text: str
    sections: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    fit: Fit | None = None
    featured: dict[str, Any] | None = None
    note_text: str = ""


def _entry(item: ItemView, tz: ZoneInfo) -> dict[str, Any]:
    host = urlsplit(item.url).hostname or ""
    source = item.source if item.source and item.source != "manual" else ""
    if source.startswith(("file:", "page:")) or "://" in source:
        source = ""  # an import detail, not a name a reader knows
    return {
        "number": 0,
        "title": item.title,
        "url": item.url,
        "source": source or host.removeprefix("www."),
        "date": human_date(item.published_at, tz),
        "short_date": short_date(item.published_at, tz),
        "iso_date": item.published_at.astimezone(tz).date().isoformat(),
        "summary_html": item.summary_html,
        "summary_text": html_to_text(item.summary_html, width=72, indent="   "),
        "mode": "full",  # full | short | title
        "anchor": "",
    }


def _sections(
    items: Sequence[ItemView],
    tz: ZoneInfo,
    *,
    exclude_url: str | None = None,
    order: Sequence[str] = (),
) -> list[tuple[str, list[dict[str, Any]]]]:
    """Items grouped by category, newest first. A category is matched by its key (case and
    spacing aside) and named as its oldest item spells it; the sections come in the order of
    `order` (the setting `sections`), then alphabetically."""
    ordered = sorted(items, key=lambda i: i.published_at, reverse=True)
    groups: dict[str, list[dict[str, Any]]] = {}
    names: dict[str, str] = {}
    for item in sorted(items, key=lambda i: i.published_at):
        names.setdefault(
            category_key(item.category or DEFAULT_SECTION), item.category or DEFAULT_SECTION
        )
    for item in ordered:
        if exclude_url is not None and item.url == exclude_url:
            continue
        name = names[category_key(item.category or DEFAULT_SECTION)]
        groups.setdefault(name, []).append(_entry(item, tz))
    sections = [(name, groups[name]) for name in order_sections(groups, order)]
    # number in reading order (section by section)
    n = 0
    for _, entries in sections:
        for entry in entries:
            n += 1
            entry["number"] = n
    return sections


def render_note(markdown: str) -> tuple[str, str]:
    """An editor's note: Markdown (CommonMark, raw HTML off) rendered, then sanitised with the
    same allow-lists as feed summaries. Returns (html, text)."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "typographer": False})
    raw = md.render(markdown)
    # Headings inside the note sit below the digest's own: h1/h2 become h3, h5/h6 become h4.
    raw = re.sub(r"<(/?)h[12]>", r"<\1h3>", raw)
    raw = re.sub(r"<(/?)h[56]>", r"<\1h4>", raw)
    clean = sanitise_html(raw) if raw.strip() else ""
    return clean, html_to_text(clean, width=72) if clean else ""


def _slug(text: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    slug, n = f"s-{base}", 1
    while slug in used:
        n += 1
        slug = f"s-{base}-{n}"
    used.add(slug)
    return slug


def render_subject(
    template: str, *, name: str, number: int | None, dates: str, items: Sequence[ItemView]
) -> str:
    # A Subject header is plain text, not HTML: escaping would show "&amp;" in mail clients.
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701
    try:
        subject = env.from_string(template).render(
            name=name,
            date_range=dates,
            number=number if number is not None else "",
            count=len(items),
            top_title=items[0].title if items else "",
        )
    except jinja2.TemplateError as exc:
        raise ConfigError(
            f"setting 'subject' is not a valid template: {exc}",
            hint="Variables: name, date_range, number, count, top_title.",
        ) from None
    return " ".join(subject.split())


def render_issue(
    brand: Branding,
    items: Sequence[ItemView],
    *,
    period_start: datetime,
    period_end: datetime,
    number: int | None,
    templates_dir: str | None = None,
    note_markdown: str | None = None,
    featured_url: str | None = None,
    size_limit: int = HTML_SIZE_TARGET,
    env: jinja2.Environment | None = None,
) -> RenderedIssue:
    """The issue's HTML (CSS inlined) and text, identical for every recipient.

    An editor's note (Markdown) and a featured item (one of `items`, by link) are rendered into
    it. When the HTML would be larger than `size_limit` bytes, summaries are shortened, then the
    last items are listed by title only, then the rest are left to the web version of the issue.
    `env`: a Jinja2 environment to reuse (the variants of an issue share one: its templates
    are compiled once, not once per variant).
    """
    env = env or make_environment(templates_dir)
    tz = brand.timezone
    dates = date_range(period_start, period_end, tz)
    featured = _featured(items, featured_url, tz)
    # top_title: the featured item's, else the newest item's
    leading = sorted(
        items,
        key=lambda i: (featured is None or i.url != featured["url"], -i.published_at.timestamp()),
    )
    subject = render_subject(
        brand.subject_template, name=brand.name, number=number, dates=dates, items=leading
    )
    sections = _sections(
        items, tz, exclude_url=featured["url"] if featured else None, order=brand.sections
    )
    if featured is not None:  # numbered first, the sections after it
        featured["number"] = 1
        for _, entries in sections:
            for entry in entries:
                entry["number"] += 1
    note_html, note_text = render_note(note_markdown) if note_markdown else ("", "")
    archive_url = f"{brand.base_url}/archive/{number}" if brand.base_url and number else None
    titles = ([featured["title"]] if featured else []) + [
        e["title"] for _, entries in sections for e in entries
    ]
    preheader = " ".join(note_text.split())[:140] if note_text else "; ".join(titles[:3])
    if len(preheader) > 150:
        preheader = preheader[:149].rstrip() + "…"
    context: dict[str, Any] = {
        "subject": subject,
        "name": brand.name,
        "number": number,
        "date_range": dates,
        "item_count": len(items),
        "preheader": preheader,
        "organisation": brand.organisation,
        "postal_address_lines": [
            ln.strip() for ln in brand.postal_address.splitlines() if ln.strip()
        ],
        "base_url": brand.base_url,
        "archive_url": archive_url,
        "unsubscribe_url": PLACEHOLDER_UNSUBSCRIBE,
        # a subscriber chooses their topics and frequency on the web: only with base_url
        "preferences_url": PLACEHOLDER_PREFERENCES if brand.base_url else None,
        "logo_url": brand.logo_url,
        "accent": brand.accent_colour,
        "footer_text": brand.footer_text,
        "lang": brand.language,
        "dir": brand.direction,
        "note_html": note_html,
        "note_text": note_text,
        "featured": featured,
    }

    def attempt(
        shorten: bool, with_summary: int, shown: int
    ) -> tuple[str, str, list[tuple[str, list[dict[str, Any]]]], int]:
        laid, cut = layout(sections, shorten=shorten, with_summary=with_summary, shown=shown)
        used: set[str] = set()
        toc = []
        for category, entries in laid:
            anchor = _slug(category, used)
            toc.append({"title": category, "anchor": anchor, "count": len(entries)})
        ctx = {
            **context,
            "sections": laid,
            "toc": toc if len(laid) > 1 else [],
            "archived_count": total - min(shown, total),
        }
        html = inline_css(render_template(env, TEMPLATE_HTML, ctx))
        return html, render_template(env, TEMPLATE_TEXT, ctx), laid, cut

    total = sum(len(entries) for _, entries in sections)

    def size(html: str) -> int:
        return len(html.encode("utf-8"))

    html, text, laid, cut = attempt(False, total, total)
    fit = Fit(html_bytes=size(html), limit=size_limit)
    if fit.html_bytes > size_limit:
        html, text, laid, cut = attempt(True, total, total)
        fit = Fit(html_bytes=size(html), limit=size_limit, shortened=cut)
    if fit.html_bytes > size_limit:
        # The most items with a (short) summary such that the rest, as titles, still fit.
        best = largest(0, total, lambda k: size(attempt(True, k, total)[0]) <= size_limit)
        if best is not None:
            html, text, laid, cut = attempt(True, best, total)
            fit = Fit(size(html), size_limit, shortened=cut, title_only=total - best)
        elif archive_url is None:  # nowhere to send the rest: send it all, and say so
            html, text, laid, cut = attempt(True, 0, total)
            fit = Fit(size(html), size_limit, title_only=total, over_limit=True)
        else:
            shown = largest(0, total, lambda n: size(attempt(True, 0, n)[0]) <= size_limit) or 0
            html, text, laid, cut = attempt(True, 0, shown)
            fit = Fit(size(html), size_limit, title_only=shown, archived=total - shown,
                      over_limit=size(html) > size_limit)  # fmt: skip
    return RenderedIssue(
        subject=subject, html=html, text=text, sections=laid, fit=fit, featured=featured,
        note_text=note_text,
    )  # fmt: skip


def _featured(items: Sequence[ItemView], url: str | None, tz: ZoneInfo) -> dict[str, Any] | None:
    if not url:
        return None
    wanted = item_key(url.strip())
    for item in items:
        if item_key(item.url) == wanted:
            return _entry(item, tz)
    raise UsageError(
        f"--featured {url} is not one of this issue's items",
        hint="Name the link of an item in this issue: `digest preview` writes them to digest.txt.",
    )
