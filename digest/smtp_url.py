"""The relay's address: smtp://, smtp+starttls:// or smtps:// URLs, parsed into an SmtpConfig."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from digest.addresses import is_loopback


@dataclass
class SmtpConfig:
    url: str
    security: Literal["plain", "starttls", "tls"]
    host: str
    port: int
    user: str | None = None
    password: str | None = None
    ca_file: str | None = None
    timeout: float = 30.0  # one read
    transaction_seconds: float = 120.0  # connecting and logging in, or one transaction up to "."
    final_reply_seconds: float = 600.0  # the reply to the final "."

    @property
    def display(self) -> str:
        """The URL without credentials, for messages."""
        scheme = {"plain": "smtp", "starttls": "smtp+starttls", "tls": "smtps"}[self.security]
        return f"{scheme}://{self.host}:{self.port}"


_SMTP_SCHEMES: dict[str, tuple[Literal["plain", "starttls", "tls"], int]] = {
    "smtp": ("plain", 25),
    "smtp+starttls": ("starttls", 587),
    "smtps": ("tls", 465),
}


def parse_smtp_url(url: str) -> SmtpConfig:
    """Parse smtp://, smtp+starttls:// or smtps:// URLs; raises ValueError on a bad one."""
    parts = urlsplit(url)
    if parts.scheme not in _SMTP_SCHEMES:
        raise ValueError(
            f"{url!r} must start with smtp://, smtp+starttls:// or smtps:// "
            "(e.g. smtp+starttls://user@mail.example.org:587)"
        )
    if parts.password is not None:
        raise ValueError(
            "do not put the password in smtp_url; set DIGEST_SMTP_PASSWORD or smtp_password_file"
        )
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host name")
    security, default_port = _SMTP_SCHEMES[parts.scheme]
    try:
        port = parts.port or default_port
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port") from None
    user = unquote(parts.username) if parts.username else None
    if user and security == "plain" and not is_loopback(parts.hostname):
        raise ValueError(
            f"refusing to send credentials over a plain connection to {parts.hostname}; "
            "use smtp+starttls:// or smtps://"
        )
    return SmtpConfig(url=url, security=security, host=parts.hostname, port=port, user=user)
