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
    """An error a user can act on: a message saying what is wrong and a hint saying what to do.
    A subclass names its exit code and HTTP status in its class line:
    `class UsageError(DigestError, exit_code=EXIT_USAGE, http_status=400)`."""

    exit_code = EXIT_ERROR
    http_status = 500

    def __init_subclass__(
        cls, *, exit_code: int | None = None, http_status: int | None = None, **kw: object
    ) -> None:
        super().__init_subclass__(**kw)
        if exit_code is not None:
            cls.exit_code = exit_code
        if http_status is not None:
            cls.http_status = http_status

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(DigestError, exit_code=EXIT_USAGE, http_status=400):
    """The command line or the request asked for something that cannot be done as asked."""


class ConfigError(DigestError, exit_code=EXIT_CONFIG):
    """The settings (digest.toml, the environment, a secret file) are wrong or missing."""


class NotFoundError(DigestError, http_status=404):
    """What was named (an issue, an item, a subscriber, a page) does not exist."""


class TooManyRequests(DigestError, http_status=429):
    """A limit on what the public may make us do was reached; try again after `retry_after`
    seconds."""

    def __init__(self, message: str, hint: str | None = None, *, retry_after: int = 60) -> None:
        super().__init__(message, hint)
        self.retry_after = retry_after


class DatabaseError(DigestError, http_status=503):
    """The database could not be reached or used."""


class SmtpUnavailable(DigestError, exit_code=EXIT_TEMPFAIL, http_status=503):
    """The SMTP server could not be reached or refused us: temporary, try again later."""


class SenderRejected(DigestError):
    """The relay refused the sender or the message, not a recipient: the run stopped and the
    rest stays queued."""


class TemporaryFailure(DigestError, exit_code=EXIT_TEMPFAIL):
    """Something needed is unavailable for now (a mailbox, a folder): trying again later may
    succeed."""


class Interrupted(DigestError, exit_code=EXIT_INTERRUPTED):
    """Stopped by a signal (Ctrl-C, SIGTERM) before it was done."""


def explain_os_error(exc: OSError) -> DigestError | None:
    """A clear error for a failure of the machine: no space, no permission, read-only."""
    import errno
    import os

    what = f" {exc.filename}" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return DigestError(
            f"no space left on the disk (writing{what})",
            hint="Free some space (`df -h` shows where), then run the command again.",
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        try:
            import pwd

            user = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            user = f"uid {os.geteuid()}"
        return DigestError(
            f"permission denied:{what or ' a file or folder'} (digest runs as {user})",
            hint=f"Check its owner and mode (`ls -l`): files of digest belong to the user that "
            f"runs it ({user}), e.g. `chown -R {user} /srv/digest`.",
        )
    if exc.errno == errno.EROFS:
        return DigestError(f"the file system is read-only (writing{what})")
    return None
