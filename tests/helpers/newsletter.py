"""The test newsletter's constants."""

from zoneinfo import ZoneInfo

SECRET = "test-secret-key-0123456789-abcdefghijk"
FROM = "Safeguarding News <news@partnership.example.org>"
LONDON = ZoneInfo("Europe/London")  # the partnership's time zone
