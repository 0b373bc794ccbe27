"""The bytes of an SMTP connection: replies read off the socket as they come (an asyncio
Protocol), the envelope commands, and what connecting needs (the TLS context, the EHLO name).
The client that drives them, stage by stage, is digest.send.smtp."""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from functools import cache
from typing import cast

from digest.errors import ConfigError
from digest.smtp_url import SmtpConfig

MAX_LINE = 8192  # as smtplib: a longer reply line is no reply

# What SmtpConnection.send asks once the server is ready for a message's content: the
# envelope (sender, recipient) of the next message, to go out behind it, or None.
Then = Callable[[], Awaitable[tuple[str, str] | None]]


def tls_context(cfg: SmtpConfig) -> ssl.SSLContext:
    """Certificates verified against the system's CAs, or smtp_ca_file (`digest check --smtp`
    uses the same)."""
    try:
        return ssl.create_default_context(cafile=cfg.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"smtp_ca_file {cfg.ca_file}: {exc}") from None


@cache
def default_hostname() -> str:
    """What smtplib says in EHLO when not told: the FQDN, else a literal of the address."""
    fqdn = socket.getfqdn()
    return fqdn if "." in fqdn else "[127.0.0.1]"


class Lost(ConnectionError):
    """The connection closed, was cut, or sent something that is not a reply."""


class Wire(asyncio.Protocol):
    """Bytes in, replies out: (code, text) pairs, text lines joined by newlines."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.lines: list[bytes] = []  # the lines so far of a multi-line reply
        self.replies: deque[tuple[int, bytes]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.want = 0
        self.lost: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            line = buf[start : end + 1]
            start = end + 1
            self.lines.append(line[4:].strip(b" \t\r\n"))
            try:
                code = int(line[:3])
            except ValueError:  # as smtplib: a line without a code ends the reply, as -1
                code = -1
            if code < 0 or line[3:4] != b"-":
                self.replies.append((code, b"\n".join(self.lines)))
                self.lines = []
        self.buf = buf[start:]
        if len(self.buf) > MAX_LINE:
            self._fail("a reply line longer than 8192 bytes")
            if self.transport is not None:
                self.transport.abort()
        elif self.waiter is not None and len(self.replies) >= self.want:
            waiter, self.waiter = self.waiter, None
            if not waiter.done():
                waiter.set_result(None)

    def eof_received(self) -> bool:
        self._fail("Connection unexpectedly closed")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(
            f"Connection unexpectedly closed: {exc}" if exc else "Connection unexpectedly closed"
        )

    def _fail(self, why: str) -> None:
        if self.lost is None:
            self.lost = why
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(Lost(self.lost))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def mail_command(envelope_from: str) -> bytes:
    # Addresses were validated (no spaces, brackets or line breaks) when stored.
    return f"MAIL FROM:<{envelope_from}>\r\n".encode("ascii")


def rcpt_command(recipient: str) -> bytes:
    return f"RCPT TO:<{recipient}>\r\n".encode("ascii")


def envelope(envelope_from: str, recipient: str) -> bytes:
    return mail_command(envelope_from) + rcpt_command(recipient) + b"DATA\r\n"
