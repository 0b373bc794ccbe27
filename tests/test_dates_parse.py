"""Dates as people write them (dates.py), read in the newsletter's time zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digest.dates import parse_when

from .helpers.newsletter import LONDON


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Thurs 12th Sept 2013", datetime(2013, 9, 11, 23, 0, tzinfo=UTC)),  # BST midnight
        ("12 September 2013", datetime(2013, 9, 11, 23, 0, tzinfo=UTC)),
        ("Tues 1st Oct 2013 14:00", datetime(2013, 10, 1, 13, 0, tzinfo=UTC)),
        ("2026-11-20", datetime(2026, 11, 20, 0, 0, tzinfo=UTC)),  # GMT
        ("2026-11-20T09:30:00+01:00", datetime(2026, 11, 20, 8, 30, tzinfo=UTC)),
        ("12/09/2013", datetime(2013, 9, 11, 23, 0, tzinfo=UTC)),  # day first, as in the UK
        ("7d", datetime(2026, 11, 21, 12, 0, tzinfo=UTC)),
        ("yesterday", datetime(2026, 11, 27, 0, 0, tzinfo=UTC)),
    ],
)
def test_parse_when(text: str, expected: datetime) -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert parse_when(text, LONDON, now=now) == expected


def test_parse_when_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="cannot read 'soonish' as a date"):
        parse_when("soonish", LONDON)
