"""Parsing the dates people and web sites write, and showing dates in the newsletter's zone."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dateutil import parser as dateparser

# Forms real sites print that dateutil does not know: "Thurs 12th Sept 2013", "Weds", "Sept".
_ORDINAL = re.compile(r"\b(\d{1,2})(st|nd|rd|th)\b", re.IGNORECASE)
_WORDS = {
    "sept": "Sep",
    "thurs": "Thu",
    "thur": "Thu",
    "tues": "Tue",
    "weds": "Wed",
}
_WORD = re.compile(r"\b(" + "|".join(_WORDS) + r")\b\.?", re.IGNORECASE)
_RELATIVE = re.compile(r"^(\d+)\s*(d|day|days|w|week|weeks|h|hour|hours)(\s+ago)?$", re.IGNORECASE)


def parse_when(text: str, tz: ZoneInfo, now: datetime | None = None) -> datetime:
    """An aware UTC datetime from ISO dates, human dates, 'today', 'yesterday' or '7d'.

    Dates without a time mean midnight, and times without a zone mean local time, in `tz`.
    Raises ValueError with a message naming the text.
    """
    raw = text.strip()
    now = now or datetime.now(UTC)
    lowered = raw.lower()
    if lowered in ("now",):
        return now
    if lowered in ("today", "yesterday"):
        day = now.astimezone(tz).date() - timedelta(days=lowered == "yesterday")
        return _local_midnight(day, tz)
    rel = _RELATIVE.match(raw)
    if rel:
        n, unit = int(rel.group(1)), rel.group(2)[0].lower()
        delta = {"d": timedelta(days=n), "w": timedelta(weeks=n), "h": timedelta(hours=n)}[unit]
        return now - delta
    cleaned = _ORDINAL.sub(r"\1", raw)
    cleaned = _WORD.sub(lambda m: _WORDS[m.group(1).lower()], cleaned)
    try:
        parsed = dateparser.parse(cleaned, dayfirst=not re.match(r"^\d{4}-", cleaned))
    except (ValueError, OverflowError, dateparser.ParserError):
        raise ValueError(
            f"cannot read {text!r} as a date; use e.g. 2026-11-20, '12 Sept 2013' or 7d"
        ) from None
    if parsed is None:
        raise ValueError(f"cannot read {text!r} as a date")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    result: datetime = parsed.astimezone(UTC)
    return result


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def human_date(moment: datetime, tz: ZoneInfo) -> str:
    """'Thursday 12 September 2013' in the newsletter's time zone."""
    local = moment.astimezone(tz)
    return f"{local:%A} {local.day} {local:%B %Y}"


def short_date(moment: datetime, tz: ZoneInfo) -> str:
    local = moment.astimezone(tz)
    return f"{local.day} {local:%b %Y}"


def date_range(start: datetime, end: datetime, tz: ZoneInfo) -> str:
    """'5 – 12 September 2013', '28 August – 4 September 2013' or with both years."""
    a, b = start.astimezone(tz), end.astimezone(tz)
    if a.year != b.year:
        return f"{a.day} {a:%B %Y} – {b.day} {b:%B %Y}"
    if a.month != b.month:
        return f"{a.day} {a:%B} – {b.day} {b:%B %Y}"
    if a.day != b.day:
        return f"{a.day} – {b.day} {b:%B %Y}"
    return f"{b.day} {b:%B %Y}"
