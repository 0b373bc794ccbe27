"""The rendered test issues: the plain one (issue 7, tests/golden/issue7.*) and the crafted one
(issue 12: categories, editor's note, featured item, long summaries, Welsh/Polish/Arabic names,
hostile HTML; tests/golden/craft12.*), the message settings they are sent with, and the golden
file check.

Update the golden files on purpose with:  DIGEST_UPDATE_GOLDEN=1 make test
"""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from digest.compose.wire import MessageSettings
from digest.news.normalise import sanitise_html
from digest.render.issue import Branding, ItemView, render_issue

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
UPDATE = os.environ.get("DIGEST_UPDATE_GOLDEN") == "1"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

BRAND = Branding(
    name="Safeguarding News",
    organisation="Example Safeguarding Partnership",
    postal_address="Civic Centre, 1 Market Street\nExampletown EX1 2AB",
    base_url="https://news.example.org",
    timezone=ZoneInfo("Europe/London"),
    subject_template="{{ name }}: {{ date_range }}",
    # the order the golden files were made with (before `sections`, newest item first)
    sections=("Procedures", "Training", "Research"),
)
MSG = MessageSettings(
    from_address="Safeguarding News <news@example.org>",
    reply_to="Business Unit <unit@example.org>",
    list_id="Safeguarding News <safeguarding-news.example.org>",
    mailto_unsubscribe="mailto:news@example.org?subject=unsubscribe",
    message_id_domain="example.org",
)


def fixed_items() -> list[ItemView]:
    seed = (
        "<p>Research carried out by The Children’s Society and Refugee Council, “Still at Risk”, "
        "found victims of child trafficking are still being inadequately protected.</p>"
        "<ul><li>increase understanding of child trafficking;</li>"
        "<li>ensure all agencies implement all statutory and practice guidance;</li></ul>"
        "<p>The report is available on: <a href='http://www.childrenssociety.org.uk/'>the "
        "Children’s Society site</a>.</p>"
    )
    return [
        ItemView("“Still at Risk” research finds that more needs to be done to safeguard trafficked children",
                 "https://example.org/news/still-at-risk", sanitise_html(seed), "Research", T0),
        ItemView("Updated procedure: children missing from home or care",
                 "https://example.org/procedures/missing", sanitise_html("<p>Return interviews within 72 hours.</p>"),
                 "Procedures", T0 + timedelta(days=2)),
        ItemView("Neglect toolkit briefings — Gwasanaethau Cymdeithasol, Łódź & <partners>",
                 "https://example.org/training/neglect?a=1&b=2",
                 sanitise_html("<p onclick='x()'>Book <a href='javascript:alert(1)'>now</a><script>x()</script>.</p>"),
                 "Training", T0 + timedelta(days=1)),
    ]  # fmt: skip


def render_fixed() -> Any:
    """Issue 7, the plain golden issue."""
    return render_issue(
        BRAND,
        fixed_items(),
        period_start=T0 - timedelta(days=1),
        period_end=T0 + timedelta(days=6),
        number=7,
    )


def golden(name: str, actual: str) -> None:
    """`actual` must equal tests/golden/NAME (written, and the test failed, when it is missing)."""
    path = GOLDEN / name
    if UPDATE or not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"golden file {name} was missing and has been written; check it and re-run")
    assert actual == path.read_text(encoding="utf-8"), (
        f"{name} differs (DIGEST_UPDATE_GOLDEN=1 to accept)"
    )


# The crafted issue (issue 12) ---------------------------------------------------------------

CRAFT_BRAND = dataclasses.replace(
    BRAND,
    subject_template="{{ name }} #{{ number }}: {{ top_title }}",
    logo_url="https://news.example.org/static/logo.png",
    accent_colour="#7a1f5c",
    footer_text="Safeguarding is everyone's business. Report a concern: 01234 567890.",
    sections=("procedures", "EVENTS", " Training ", "News"),  # matched by key
)
NOTE = """\
# A word from the editor

Croeso! Welcome to **issue 12**. This week: the *Łódź* exchange visit, new
procedures, and [our training calendar](https://news.example.org/training).

- Book early: places are limited.
- Tell a colleague.

<script>alert("note")</script> [click](javascript:alert(1))
"""
LONG = (
    "<p>The review looked at how agencies in Wales, Poland and the Gulf worked together on cases "
    "where children moved between countries, and found that information about risk often "
    "arrived late or not at all. It makes twelve recommendations, the first being that every "
    "partnership names a lead for cross-border cases.</p>"
    "<p>Second, referral forms should record the languages a family speaks, so that "
    "interpreters are booked before the first visit rather than after it. Third, that "
    "supervision records are kept in a form that can be shared with the receiving agency "
    "within five working days.</p>"
)
HOSTILE = (
    "<p onclick='steal()'>Training dates <a href='javascript:alert(1)'>here</a>"
    "<script>document.location='https://evil.example'</script>"
    "<img src=x onerror=alert(1)><iframe src='https://evil.example'></iframe>"
    "<style>body{display:none}</style><form action='https://evil.example'><input></form>"
    " and <a href='https://example.org/ok' onmouseover='x()'>the booking page</a>.</p>"
)


def golden_items() -> list[ItemView]:
    return [
        ItemView("Serious case review: children moving between Wales, Poland and the Gulf",
                 "https://example.org/reviews/cross-border", sanitise_html(LONG), "Reviews",
                 T0 + timedelta(days=3), source="Partnership reviews"),
        ItemView("Gwasanaethau Cymdeithasol: Siân Llŷr on Welsh-language assessments",
                 "https://example.org/news/welsh-assessments",
                 sanitise_html("<p>Siân Llŷr, Pennaeth Gwasanaethau Plant, explains why "
                               "assessments in Welsh matter to families in Ynys Môn.</p>"),
                 "News", T0 + timedelta(days=2), source="Cyngor Sir Ynys Môn"),
        ItemView("Exchange visit to Łódź: Zofia Kowalczyk-Łęcka's notes",
                 "https://example.org/news/lodz-visit",
                 sanitise_html("<p>Notes from the visit, by Zofia Kowalczyk-Łęcka and "
                               "Grzegorz Brzęczyszczykiewicz.</p>"),
                 "News", T0 + timedelta(days=1), source="manual"),
        ItemView("مؤتمر حماية الطفل: فاطمة الزهراء ومحمد عبد الله",
                 "https://example.org/events/conference-ar",
                 sanitise_html("<p>تتحدث فاطمة الزهراء عن حماية الأطفال في المدارس.</p>"),
                 "Events", T0 + timedelta(days=4), source="Arabic Community Forum"),
        ItemView("Neglect toolkit briefings <b>& more</b>",
                 "https://example.org/training/neglect?a=1&b=2", sanitise_html(HOSTILE),
                 "Training", T0 + timedelta(days=2, hours=3), source="file:items.json"),
        ItemView("Updated procedure: children missing from home or care",
                 "https://example.org/procedures/missing",
                 sanitise_html("<p>Return interviews within 72 hours.</p>"), "Procedures",
                 T0 + timedelta(days=5)),
    ]  # fmt: skip


def render_golden(**kw: Any) -> Any:
    """Issue 12, the crafted golden issue; keyword arguments override render_issue's."""
    args: dict[str, Any] = dict(
        period_start=T0 - timedelta(days=1), period_end=T0 + timedelta(days=6), number=12,
        note_markdown=NOTE, featured_url="https://example.org/reviews/cross-border",
    )  # fmt: skip
    args.update(kw)
    return render_issue(CRAFT_BRAND, golden_items(), **args)


def write_templates(folder: Path, files: dict[str, str]) -> str:
    """A templates folder holding these files in email/ (to override or break the built-in
    ones); its path, for templates_dir."""
    (folder / "email").mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (folder / "email" / name).write_text(body, encoding="utf-8")
    return str(folder)


def render_fixed_variant(*categories: str) -> Any:
    """A variant of issue 7: only its items of these categories (issues/variants.py renders a
    variant the same way, from the issue's own items)."""
    return render_issue(
        BRAND,
        [i for i in fixed_items() if i.category in categories],
        period_start=T0 - timedelta(days=1),
        period_end=T0 + timedelta(days=6),
        number=7,
    )
