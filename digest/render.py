"""Render an issue to HTML and text with Jinja2, then inline its CSS with premailer: once per issue.

Per-recipient values are not known here. They appear as URL-safe placeholders (letters only,
so neither premailer nor quoted-printable encoding can alter them) that message.py fills in.
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from premailer import Premailer

from digest.dates import date_range, human_date, short_date
from digest.errors import ConfigError, DigestError
from digest.news.normalise import html_to_text

PLACEHOLDER_UNSUBSCRIBE = "DIGESTxUNSUBSCRIBExURLx7q"
TEMPLATE_HTML = "email/digest.html"
TEMPLATE_TEXT = "email/digest.txt"


def builtin_templates_dir() -> Path:
    """templates/ inside the installed package, or at the top of a source checkout."""
    packaged = Path(str(resources.files("digest"))) / "templates"
    if (packaged / "email").is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "templates"


def make_environment(templates_dir: str | None = None) -> jinja2.Environment:
    """Jinja2 with autoescape for HTML and StrictUndefined; an organisation's own templates
    (templates_dir) win, and any template they lack falls back to the built-in one."""
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir:
        if not Path(templates_dir).is_dir():
            raise ConfigError(f"templates_dir {templates_dir} is not a folder")
        loaders.append(jinja2.FileSystemLoader(templates_dir))
    loaders.append(jinja2.FileSystemLoader(builtin_templates_dir()))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(["html", "htm"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["wrap"] = _wrap
    return env


def _wrap(text: str, width: int = 72, indent: str = "") -> str:
    """Wrap each paragraph of plain text near `width` columns."""
    paras = [p for p in text.split("\n\n")]
    return "\n\n".join(
        textwrap.fill(
            " ".join(p.split()),
            width=width,
            initial_indent=indent,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
        for p in paras
        if p.strip()
    )


@dataclass(frozen=True)
class ItemView:
    title: str
    url: str
    summary_html: str
    category: str
    published_at: datetime


@dataclass(frozen=True)
class Branding:
    name: str
    organisation: str
    postal_address: str
    base_url: str | None
    timezone: ZoneInfo
    subject_template: str


@dataclass(frozen=True)
class RenderedIssue:
    subject: str
    html: str  # CSS inlined, with PLACEHOLDER_UNSUBSCRIBE
    text: str
    sections: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)


def _sections(items: Sequence[ItemView], tz: ZoneInfo) -> list[tuple[str, list[dict[str, Any]]]]:
    """Items grouped by category (categories in order of their newest item), newest first."""
    ordered = sorted(items, key=lambda i: i.published_at, reverse=True)
    groups: dict[str, list[dict[str, Any]]] = {}
    for number, item in enumerate(ordered, 1):
        groups.setdefault(item.category or "News", []).append(
            {
                "number": number,
                "title": item.title,
                "url": item.url,
                "date": human_date(item.published_at, tz),
                "short_date": short_date(item.published_at, tz),
                "summary_html": item.summary_html,
                "summary_text": html_to_text(item.summary_html, width=72, indent="   "),
            }
        )
    # renumber in reading order (section by section)
    n = 0
    for entries in groups.values():
        for entry in entries:
            n += 1
            entry["number"] = n
    return list(groups.items())


def render_subject(
    template: str, *, name: str, number: int | None, dates: str, items: Sequence[ItemView]
) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
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
) -> RenderedIssue:
    env = make_environment(templates_dir)
    tz = brand.timezone
    dates = date_range(period_start, period_end, tz)
    subject = render_subject(
        brand.subject_template, name=brand.name, number=number, dates=dates, items=items
    )
    sections = _sections(items, tz)
    titles = [e["title"] for _, entries in sections for e in entries]
    context = {
        "subject": subject,
        "name": brand.name,
        "number": number,
        "date_range": dates,
        "sections": sections,
        "item_count": len(items),
        "preheader": "; ".join(titles[:3])[:150],
        "organisation": brand.organisation,
        "postal_address_lines": [ln.strip() for ln in brand.postal_address.splitlines() if ln.strip()],
        "base_url": brand.base_url,
        "archive_url": f"{brand.base_url}/archive/{number}" if brand.base_url and number else None,
        "unsubscribe_url": PLACEHOLDER_UNSUBSCRIBE,
    }
    html = _render_template(env, TEMPLATE_HTML, context)
    text = _render_template(env, TEMPLATE_TEXT, context)
    return RenderedIssue(subject=subject, html=inline_css(html), text=text, sections=sections)


def _render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise DigestError(
            f"template {exc.filename or exc.name} line {exc.lineno}: {exc.message}",
            hint="Fix the template; nothing was sent.",
        ) from None
    except jinja2.TemplateNotFound as exc:
        raise DigestError(f"template {exc.name} not found") from None
    except jinja2.UndefinedError as exc:
        raise DigestError(
            f"template {name}: {exc.message}", hint="Fix the template; nothing was sent."
        ) from None


def inline_css(html: str) -> str:
    """Move CSS into style attributes (mail clients drop <style>), keeping @media rules.

    Network access is off: a template cannot make rendering fetch anything.
    """
    return str(
        Premailer(
            html,
            allow_network=False,
            allow_loading_external_files=False,
            strip_important=False,
            disable_validation=True,
            cssutils_logging_level=logging.CRITICAL,
            remove_classes=False,
        ).transform()
    )
