"""Senders: how prepared message bytes leave (stage 7). `SmtpSender` drives one connection of
the SMTP client (digest.send.smtp) from blocking code, for the single messages (test and
review copies, confirmation emails); the bulk send runs many such connections on one event
loop (digest.send.run). `FileSender` writes .eml files instead (dry runs)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Protocol

from digest.send.loop import new_event_loop, run_blocking
from digest.send.replies import SendResult
from digest.send.smtp import SmtpConnection
from digest.send.smtp_wire import Then
from digest.smtp_url import SmtpConfig

log = logging.getLogger("digest.send")

__all__ = ["AsyncSender", "FileSender", "SendResult", "Sender", "SmtpSender"]


class Sender(Protocol):
    def send(self, envelope_from: str, recipient: str, message: bytes) -> SendResult: ...

    def close(self) -> None: ...


class AsyncSender(Protocol):
    """What the send loop (digest.send.run) drives: SmtpConnection, or a test's stand-in."""

    async def send(
        self, envelope_from: str, recipient: str, message: bytes, then: Then | None = None
    ) -> SendResult:
        """`then`: see SmtpConnection.send (the next envelope, pipelined behind this message)."""
        ...

    async def close(self) -> None: ...


async def close_quietly(sender: AsyncSender) -> None:
    """Close a connection that may be broken already (there is nothing to save then)."""
    try:
        await sender.close()
    except Exception:
        log.debug("closing a connection failed", exc_info=True)


class SmtpSender:
    """One SMTP connection for blocking code: an SmtpConnection on an event loop of its own,
    opened on first use and reopened after it drops. `loop` and `connection` can be handed
    to the send loop (digest.send.job hands over the connection made before anything is
    frozen)."""

    def __init__(
        self,
        cfg: SmtpConfig,
        local_hostname: str | None = None,
        *,
        stop: threading.Event | None = None,
    ) -> None:
        self.loop = new_event_loop()
        self.connection = SmtpConnection(cfg, local_hostname, stop=stop)

    def connect(self) -> None:
        """Open the connection; raises SmtpUnavailable (temporary) or DigestError (setup)."""
        run_blocking(self.loop, self.connection.connect())

    def send(self, envelope_from: str, recipient: str, message: bytes) -> SendResult:
        """Send prepared bytes (CRLF line ends, no line starting with '.') to one recipient."""
        return run_blocking(self.loop, self.connection.send(envelope_from, recipient, message))

    def close(self) -> None:
        if self.loop.is_closed():
            return
        try:
            run_blocking(self.loop, self.connection.close())
        finally:
            self.loop.close()


class FileSender:
    """Writes each message to a folder as an .eml file instead of sending it (dry runs)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        folder.mkdir(parents=True, exist_ok=True)

    def send(self, envelope_from: str, recipient: str, message: bytes) -> SendResult:
        self.count += 1
        safe = "".join(c if c.isalnum() or c in "@.-_" else "_" for c in recipient)
        (self.folder / f"{self.count:06d}-{safe}.eml").write_bytes(message)
        return SendResult("sent", 250, "250 written to file")

    def close(self) -> None:
        pass
