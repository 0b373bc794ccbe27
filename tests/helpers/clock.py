"""The only fake the tests may use: the clock."""

from __future__ import annotations

from datetime import datetime, timedelta

from digest.models import utcnow


class Clock:
    """The real time plus whatever the test moves it by."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)
