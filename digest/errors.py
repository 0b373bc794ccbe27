"""Domain errors. Raised by the library, translated to exit codes in one place (cli.py) and to
HTTP status codes in one place (web.py), from the class attributes below."""

from __future__ import annotations

# Exit codes (sysexits.h where one fits).
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_FAILURES = 65  # EX_DATAERR: the issue went out, but some addresses failed for good
EXIT_TEMPFAIL = 75  # EX_TEMPFAIL: only temporary failures remain, cron may retry
EXIT_INTERRUPTED = 130


class DigestError(Exception):
    """An error a user can act on: a message saying what is wrong and a hint saying what to do."""

    exit_code = EXIT_ERROR
    http_status = 500

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(DigestError):
    exit_code = EXIT_USAGE
    http_status = 400


class ConfigError(DigestError):
    exit_code = EXIT_CONFIG


class NotFoundError(DigestError):
    http_status = 404


class DatabaseError(DigestError):
    http_status = 503


class SmtpUnavailable(DigestError):
    """The SMTP server could not be reached or refused us: temporary, try again later."""

    exit_code = EXIT_TEMPFAIL
    http_status = 503


class TemporaryFailure(DigestError):
    exit_code = EXIT_TEMPFAIL


class Interrupted(DigestError):
    exit_code = EXIT_INTERRUPTED
