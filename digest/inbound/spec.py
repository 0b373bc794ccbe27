"""Mailbox names (`imaps://user@host/INBOX`, `maildir:PATH`, …) parsed into a SourceSpec.

A leaf module: the settings validate `inbox_url` with it, and sources.py opens what it names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from digest.addresses import is_loopback

_IMAP_SCHEMES: dict[str, tuple[Literal["tls", "starttls", "plain"], int]] = {
    "imaps": ("tls", 993),
    "imap+starttls": ("starttls", 143),
    "imap": ("plain", 143),
}


@dataclass(frozen=True)
class SourceSpec:
    kind: Literal["maildir", "mbox", "imap"]
    path: str = ""
    security: Literal["tls", "starttls", "plain"] = "tls"
    host: str = ""
    port: int = 0
    user: str = ""
    folder: str = "INBOX"

    @property
    def display(self) -> str:
        """The source for messages and the log: never a password."""
        if self.kind != "imap":
            return f"{self.kind}:{self.path}"
        scheme = {"tls": "imaps", "starttls": "imap+starttls", "plain": "imap"}[self.security]
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{self.folder}"


def parse_source(value: str) -> SourceSpec:
    """A source name as above; ValueError saying what is wrong with a bad one."""
    value = value.strip()
    if not value:
        raise ValueError("an empty mailbox name")
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme in _IMAP_SCHEMES:
        parts = urlsplit(value)
        if parts.password is not None:
            raise ValueError(
                "do not put the password in the mailbox URL; set DIGEST_INBOX_PASSWORD or "
                "inbox_password_file"
            )
        if not parts.hostname:
            raise ValueError(f"{value!r} has no host name")
        if not parts.username:
            raise ValueError(
                f"{value!r} names no user, e.g. imaps://bounces@mail.example.org/INBOX"
            )
        security, default_port = _IMAP_SCHEMES[scheme]
        if security == "plain" and not is_loopback(parts.hostname):
            raise ValueError(
                f"refusing to log in over a plain connection to {parts.hostname}; use imaps:// "
                "or imap+starttls://"
            )
        try:
            port = parts.port or default_port
        except ValueError:
            raise ValueError(f"{value!r} has an invalid port") from None
        folder = unquote(parts.path.lstrip("/")) or "INBOX"
        return SourceSpec(
            "imap", security=security, host=parts.hostname, port=port,
            user=unquote(parts.username), folder=folder,
        )  # fmt: skip
    if "://" in value:
        raise ValueError(
            f"{value!r}: a mailbox is imaps://, imap+starttls://, maildir:PATH, mbox:PATH or a path"
        )
    for prefix in ("maildir", "mbox"):
        if value.lower().startswith(prefix + ":"):
            path = value[len(prefix) + 1 :]
            if not path:
                raise ValueError(f"{value!r} names no path")
            return SourceSpec("maildir" if prefix == "maildir" else "mbox", path=path)
    return SourceSpec("maildir" if Path(value).is_dir() else "mbox", path=value)
