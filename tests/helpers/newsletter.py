"""The test newsletter's constants."""

SECRET = "test-secret-key-0123456789-abcdefghijk"
FROM = "Safeguarding News <news@partnership.example.org>"
